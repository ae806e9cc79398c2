"""Inference attention laid out as one batch over the heads against head by head, and the library's choice between
them by the key length, MiniLM encoder forward in a tf.function, interleaved in one process.

Head by head runs each head's two matmuls and softmax on the projections' column blocks, so its [B, T, S] scores stay
in the CPU cache; batched runs one BatchMatMul and one softmax over [B, N, T, S]. Shapes: a single request ([1, 25],
the mean SST-2 dev request), GLUE-length batches ([32, 16], [32, 64], [32, 128]) and SQuAD's ([8, 384]). Random ids,
the packaged all-MiniLM-L6-v2's weights; medians of interleaved calls; the fp32 matmul rate of the run beside them.

    python bench/attention_layout.py          # writes results/attention_layout.{json,md}
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from common import matmul_gflops, shown_command, write_results  # noqa: E402

SHAPES = ((1, 25, 300), (32, 16, 30), (32, 64, 12), (32, 128, 6), (8, 384, 6))  # (batch, length, calls per form)


LAYOUTS = ("library", "batched", "head by head")  # the library: batched below HEAD_BY_HEAD_FROM keys, else by head


def forward(encoder, layout):
    """A tf.function of the encoder's inference with its attention in `layout` (one of LAYOUTS)."""
    import tensorflow as tf

    from tfx_transfer.layers.attention import MultiHeadSelfAttention

    choose = MultiHeadSelfAttention._attend_for_inference
    if layout == "batched":
        MultiHeadSelfAttention._attend_for_inference = lambda self, q, k, v, bias: self._attend_batched(
            q, k, v, bias, False)
    elif layout == "head by head":
        MultiHeadSelfAttention._attend_for_inference = MultiHeadSelfAttention._attend_head_by_head
    spec = {k: tf.TensorSpec([None, None], tf.int32, name=k) for k in ("input_word_ids", "input_mask", "input_type_ids")}
    try:
        function = tf.function(lambda x: encoder(x, training=False)["sequence_output"], input_signature=[spec])
        function.get_concrete_function()
    finally:
        MultiHeadSelfAttention._attend_for_inference = choose
    return function


def main():
    import tensorflow as tf

    from tfx_transfer import BertEncoder

    encoder = BertEncoder.from_pretrained("all-MiniLM-L6-v2")
    layouts = {name: forward(encoder, name) for name in LAYOUTS}
    rng = np.random.default_rng(0)
    rows = []
    for batch, length, calls in SHAPES:
        x = {"input_word_ids": tf.constant(rng.integers(1000, 20000, (batch, length)), tf.int32),
             "input_mask": tf.ones((batch, length), tf.int32), "input_type_ids": tf.zeros((batch, length), tf.int32)}
        outputs = {name: f(x).numpy() for name, f in layouts.items()}
        difference = max(float(np.abs(outputs[name] - outputs["library"]).max()) for name in layouts)
        times = {name: [] for name in layouts}
        for _ in range(calls):
            for name, f in layouts.items():
                start = time.perf_counter()
                f(x).numpy()
                times[name].append(time.perf_counter() - start)
        ms = {name: 1000 * float(np.median(t)) for name, t in times.items()}
        rows.append({"batch": batch, "length": length, "calls": calls, "ms": ms, "max_difference": difference})
        print(rows[-1], flush=True)
    gflops = matmul_gflops()
    lines = ["# Inference attention: one batch over the heads against head by head (MiniLM encoder forward)", "",
             f"Command: `{shown_command(['python'] + sys.argv)}`; fp32 matmul rate in this run: {gflops:.0f} GFLOP/s. "
             "Medians of interleaved calls in one process, tf.function, random ids. The library runs one batch over "
             "the heads below 96 keys and head by head from 96 on (a `cond` on the length in the graph).",
             "", "| batch x length | library ms | batched ms | head by head ms | head by head / batched | "
             "max abs difference |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ms = r["ms"]
        lines.append(f"| {r['batch']} x {r['length']} | {ms['library']:.2f} | {ms['batched']:.2f} | "
                     f"{ms['head by head']:.2f} | {ms['head by head'] / ms['batched']:.2f}x | "
                     f"{r['max_difference']:.1e} |")
    write_results("attention_layout", {"rows": rows, "matmul_gflops": gflops}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
