"""Encoder inference speed: tfx_transfer BertEncoder vs keras-hub BertBackbone, same weights, same inputs.

The packaged all-MiniLM-L6-v2, all 872 SST-2 dev sentences, batch 32, in one process:
  - fixed length 128 and 64 (every batch padded to the length), tf.function and XLA (jit_compile=True);
  - ours with length-sorted batches padded to the batch's longest sentence rounded up to a multiple of 16
    (few distinct shapes, so few traces) - what the data pipeline of the training scripts does.
Reports examples/s, first-call time (tracing), MFU against the fp32 matmul rate measured in the same run, and
the process's peak RSS. Run: make bench  (or python bench/encoder_inference.py)
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import bert_forward_flops, matmul_gflops, peak_rss_gib, percent, sst2_sentences, write_results  # noqa: E402

BATCH = 32


def batches(preprocessor_fn, sentences, sort=False):
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i])) if sort else range(len(sentences))
    ordered = [sentences[i] for i in order]
    return [preprocessor_fn(ordered[i:i + BATCH]) for i in range(0, len(ordered), BATCH)]


def run(name, call, inputs, config):
    """Times `call` over all batches after one warm-up call per distinct shape."""
    start = time.perf_counter()
    np.asarray(call(inputs[0]))
    first = time.perf_counter() - start
    for shape in sorted({tuple(b["input_word_ids"].shape) for b in inputs[1:]}):
        np.asarray(call(next(b for b in inputs if tuple(b["input_word_ids"].shape) == shape)))
    start = time.perf_counter()
    for b in inputs:
        np.asarray(call(b))
    seconds = time.perf_counter() - start
    examples = sum(int(b["input_word_ids"].shape[0]) for b in inputs)
    lengths = [int(b["input_word_ids"].shape[1]) for b in inputs for _ in range(int(b["input_word_ids"].shape[0]))]
    flops = bert_forward_flops(config, lengths)
    result = {"name": name, "examples_per_s": examples / seconds, "first_call_s": first,
              "gflops_per_s": flops / seconds / 1e9, "mean_padded_length": float(np.mean(lengths))}
    print(f"{name:55s} {result['examples_per_s']:7.1f} ex/s  first call {first:5.1f} s  "
          f"{result['gflops_per_s']:6.1f} GFLOP/s  (mean length {result['mean_padded_length']:.0f})", flush=True)
    return result


def main():
    import keras_hub
    import tensorflow as tf

    from tfx_transfer import BertEncoder, BertPreprocessor
    from tfx_transfer.pretrained import resolve_pretrained

    model_dir = resolve_pretrained("all-MiniLM-L6-v2").directory
    sentences = sst2_sentences("dev")
    ours = BertEncoder.from_pretrained(model_dir, hidden_act="gelu_approximate")  # same math as keras-hub
    theirs = keras_hub.models.BertBackbone.from_preset(model_dir)
    config = ours.bert_config

    def ours_fn(jit):
        return tf.function(lambda x: ours(x, training=False)["pooled_output"], jit_compile=jit, reduce_retracing=True)

    def theirs_fn(jit):
        f = tf.function(lambda x: theirs({"token_ids": x["input_word_ids"], "padding_mask": x["input_mask"],
                                          "segment_ids": x["input_type_ids"]}, training=False)["pooled_output"],
                        jit_compile=jit, reduce_retracing=True)
        return f

    results = []
    peak = matmul_gflops()
    print(f"fp32 matmul 2048x2048: {peak:.0f} GFLOP/s")
    for length in (128, 64):
        fixed = batches(BertPreprocessor.from_pretrained(model_dir, seq_length=length), sentences)
        for jit in (False, True):
            tag = "XLA" if jit else "tf.function"
            results.append(run(f"keras-hub BertBackbone, fixed {length}, {tag}", theirs_fn(jit), fixed, config))
            results.append(run(f"tfx_transfer BertEncoder, fixed {length}, {tag}", ours_fn(jit), fixed, config))

    longest = BertPreprocessor.from_pretrained(model_dir, seq_length=128, pad_to_max_length=False)

    def bucketed(texts):
        packed = longest(texts)
        width = int(packed["input_word_ids"].shape[1])
        target = min(128, -(-width // 16) * 16)
        return {k: tf.pad(v, [[0, 0], [0, target - width]]) for k, v in packed.items()}

    sorted_batches = batches(bucketed, sentences, sort=True)
    for jit in (False, True):
        tag = "XLA" if jit else "tf.function"
        results.append(run(f"tfx_transfer BertEncoder, length-sorted buckets of 16, {tag}", ours_fn(jit),
                           sorted_batches, config))

    for r in results:
        r["mfu"] = r["gflops_per_s"] / peak
    rss = peak_rss_gib()
    lines = [
        "# Encoder inference: all-MiniLM-L6-v2 on the 872 SST-2 dev sentences, batch 32",
        "",
        f"Same weights and inputs (tanh GELU in both), one process. fp32 matmul rate measured in the run: "
        f"{peak:.0f} GFLOP/s; peak RSS of the process (both models): {rss:.2f} GiB. Command: `make bench`.",
        "",
        "| configuration | examples/s | first call (s) | GFLOP/s | MFU | mean padded length |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['examples_per_s']:.1f} | {r['first_call_s']:.1f} | "
                     f"{r['gflops_per_s']:.1f} | {percent(r['mfu'])} | {r['mean_padded_length']:.0f} |")
    write_results("encoder_inference", {"matmul_gflops": peak, "peak_rss_gib": rss, "batch": BATCH,
                                        "results": results}, lines)


if __name__ == "__main__":
    main()
