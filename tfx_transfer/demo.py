"""`make demo`: the packaged real MiniLM, loaded by our own encoder, encoding real sentences.

Prints the checkpoint load report, the tokenization of a pair, the shapes of the dict contract, timings
(first call including tracing, then steady state) and a sentence-similarity table computed with the model's
own pooling (mean over real tokens, then L2 normalisation: all-MiniLM-L6-v2 is a sentence-transformers model).

Run: python -m tfx_transfer.demo [--model=<dir or packaged name>] [--seq_length=128]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is performing music on a guitar.",
    "The new movie is awful and boring.",
    "This film was a complete waste of time.",
    "The stock market fell sharply today.",
    "Shares dropped steeply in today's trading.",
]


def mean_pool(sequence_output, input_mask):
    """Mean of token vectors over real positions, L2-normalised: [B, T, H], [B, T] -> [B, H]."""
    import numpy as np

    mask = np.asarray(input_mask, dtype=np.float32)[..., None]
    summed = (np.asarray(sequence_output) * mask).sum(axis=1)
    mean = summed / np.maximum(mask.sum(axis=1), 1e-9)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model directory or packaged model name")
    parser.add_argument("--seq_length", type=int, default=128, help="maximum tokens per input")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from tfx_transfer import BertEncoder, BertPreprocessor

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__} (backend: {keras.backend.backend()})")

    start = time.perf_counter()
    encoder = BertEncoder.from_pretrained(args.model)
    preprocessor = BertPreprocessor.from_pretrained(args.model, seq_length=args.seq_length, pad_to_max_length=False)
    config = encoder.bert_config
    print(f"\nLoaded {args.model} in {time.perf_counter() - start:.1f} s: {config.num_hidden_layers} layers, hidden "
          f"{config.hidden_size}, {config.num_attention_heads} heads, {encoder.count_params():,} parameters, "
          f"GELU={config.hidden_act}")
    print(encoder.load_report)

    tokenizer = preprocessor.tokenizer
    pair = preprocessor(["Transfer learning is fun!"], ["Adapters make it cheap."])
    length = int(pair["input_mask"].numpy().sum())
    tokens = tokenizer.convert_ids_to_tokens(pair["input_word_ids"].numpy()[0][:length])
    print(f"\nA sentence pair as the encoder sees it ({length} tokens):")
    print("  tokens  :", " ".join(tokens))
    print("  type ids:", " ".join(map(str, pair["input_type_ids"].numpy()[0][:length])))

    encode = tf.function(lambda inputs: encoder(inputs, training=False), reduce_retracing=True)
    inputs = preprocessor(SENTENCES)
    start = time.perf_counter()
    outputs = encode(inputs)
    first = time.perf_counter() - start
    print(f"\nEncoded {len(SENTENCES)} sentences (padded to the longest, {inputs['input_word_ids'].shape[1]} tokens):")
    for key in ("sequence_output", "pooled_output", "default"):
        print(f"  {key:16s} {tuple(outputs[key].shape)}")
    print(f"  encoder_outputs  {len(outputs['encoder_outputs'])} x {tuple(outputs['encoder_outputs'][0].shape)}")

    batch = preprocessor(SENTENCES * 6)  # 36 sentences
    encode(batch)
    repeats = 5
    start = time.perf_counter()
    for _ in range(repeats):
        encode(batch)
    steady = (time.perf_counter() - start) / repeats
    print(f"  first call (incl. tracing) {first:.2f} s; steady state {len(SENTENCES) * 6 / steady:.0f} sentences/s "
          f"(batch {len(SENTENCES) * 6}, {batch['input_word_ids'].shape[1]} tokens)")

    embeddings = mean_pool(outputs["sequence_output"], inputs["input_mask"])
    similarity = embeddings @ embeddings.T
    print("\nCosine similarity of mean-pooled sentence embeddings (paraphrase pairs should score highest):")
    for i, sentence in enumerate(SENTENCES):
        best = max((j for j in range(len(SENTENCES)) if j != i), key=lambda j: similarity[i, j])
        row = " ".join(f"{similarity[i, j]:5.2f}" for j in range(len(SENTENCES)))
        print(f"  [{i}] {row}   {sentence[:42]:42s} -> closest [{best}]")
    pairs_found = all(max((j for j in range(len(SENTENCES)) if j != i), key=lambda j: similarity[i, j]) == i ^ 1
                      for i in range(len(SENTENCES)))
    print(f"\nEvery sentence's nearest neighbour is its paraphrase: {pairs_found}")
    return 0 if pairs_found else 1


if __name__ == "__main__":
    raise SystemExit(main())
