"""The exported TF Serving classifier called through its raw-text signature vs the same model called in Keras.

The packaged MiniLM with a (randomly initialised) 2-class head, exported by `export_for_serving`
(max_seq_length 128); SST-2 dev sentences. Batch 1: p50/p99 latency over 300 requests; batch 32: throughput over
all 872 sentences. The Keras path tokenises with the same in-graph tokenizer and calls a tf.function.

    python bench/serving_latency.py          # writes results/serving_latency.{json,md}
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import peak_rss_gib, sst2_sentences, write_results  # noqa: E402

REQUESTS, BATCH, SEQ = 300, 32, 128


def measure(call, sentences):
    call(sentences[:1])
    call(sentences[:BATCH])
    latencies = []
    for i in range(REQUESTS):
        start = time.perf_counter()
        call(sentences[i % len(sentences):i % len(sentences) + 1])
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(0, len(sentences), BATCH):
        call(sentences[i:i + BATCH])
    throughput = len(sentences) / (time.perf_counter() - start)
    return {"p50_ms": 1000 * float(np.percentile(latencies, 50)), "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "batch32_examples_per_s": throughput}


def main():
    import keras
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from tfx_transfer import BertClassifier, BertEncoder, BertPreprocessor, BertTokenizer
    from tfx_transfer.export import export_for_serving

    keras.utils.set_random_seed(0)
    sentences = sst2_sentences("dev")
    tokenizer = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
    model = BertClassifier(BertEncoder.from_pretrained("all-MiniLM-L6-v2"), 2)
    preprocess = BertPreprocessor(tokenizer, seq_length=SEQ, pad_to_max_length=False)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    results = {"keras": measure(lambda texts: forward(preprocess(texts)).numpy(), sentences)}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_for_serving(model, tmp, tokenizer, labels=["negative", "positive"], max_seq_length=SEQ)
        signature = tf.saved_model.load(path).signatures["serving_default"]
        results["saved_model"] = measure(lambda texts: signature(text=tf.constant(texts))["probabilities"].numpy(),
                                         sentences)
    rss = peak_rss_gib()
    lines = ["# Serving: exported raw-text signature vs Keras, all-MiniLM-L6-v2 classifier", "",
             f"SST-2 dev sentences, max_seq_length {SEQ} (each batch padded to its longest sentence). Batch 1: "
             f"{REQUESTS} sequential requests; batch 32: all 872 sentences. Peak RSS of the process: {rss:.2f} GiB. "
             "Command: `python bench/serving_latency.py`.", "",
             "| path | p50 latency, batch 1 (ms) | p99 latency, batch 1 (ms) | throughput, batch 32 (ex/s) |",
             "|---|---:|---:|---:|"]
    for name, label in (("keras", "Keras model + in-graph tokenizer"), ("saved_model", "SavedModel serving_default")):
        r = results[name]
        lines.append(f"| {label} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['batch32_examples_per_s']:.1f} |")
    write_results("serving_latency", {"results": results, "peak_rss_gib": rss}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
