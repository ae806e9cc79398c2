"""The fp32 matrix multiply under both stacks at MiniLM's projection shapes (issue 23): how fast TensorFlow's kernel
(oneDNN, as importing tfx_transfer sets it up, and Eigen with TF_ENABLE_ONEDNN_OPTS=0) and PyTorch's (`nn.Linear`
under inference_mode: MKL's sgemm in the PyPI CPU wheel) compute [N, I] x [I, O] + bias, interleaved in fresh
processes.

Shapes: MiniLM's three projection shapes (384 -> 384: query, key, value, attention output; 384 -> 1536:
intermediate; 1536 -> 384: output) at N = 864 tokens (an SST-2 dev batch: 32 sentences padded to 27), 1,280 (a
SQuAD batch: 8 features padded to 160) and 3,072 (8 x 384). TensorFlow runs the product as TokenDense does
(MatMul + BiasAdd in a tf.function, which Grappler fuses). Each rate is the median of 7 timings of 20 calls.

    python bench/matmul_kernels.py --torch_python=<python with torch> [--rounds=3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import child_result, write_results  # noqa: E402

SHAPES = [(n, i, o) for n in (864, 1280, 3072) for i, o in ((384, 384), (384, 1536), (1536, 384))]
SYSTEMS = ["TensorFlow, oneDNN", "TensorFlow, Eigen", "PyTorch"]


def _median_rate(call, flops) -> float:
    call()
    call()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(20):
            out = call()
        float(out[0, 0])  # waits for the result
        times.append((time.perf_counter() - start) / 20)
    return flops / statistics.median(times) / 1e9


def child_tensorflow() -> dict:
    import tfx_transfer  # noqa: F401  (first: its oneDNN setting, as users get it)

    import numpy as np
    import tensorflow as tf

    rates = {}
    rng = np.random.default_rng(0)
    for n, i, o in SHAPES:
        x = tf.constant(rng.standard_normal((n, i), np.float32))
        kernel = tf.Variable(rng.standard_normal((i, o), np.float32) * 0.05)
        bias = tf.Variable(rng.standard_normal(o).astype(np.float32))
        project = tf.function(lambda x: tf.nn.bias_add(tf.matmul(x, kernel), bias))
        rates[f"{n}x{i}x{o}"] = _median_rate(lambda: project(x).numpy(), 2 * n * i * o)
    return {"rates": rates, "library": f"tensorflow {tf.__version__}, TF_ENABLE_ONEDNN_OPTS="
                                        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(tfx_transfer default)')}"}


def child_torch() -> dict:
    import torch

    rates = {}
    torch.manual_seed(0)
    with torch.inference_mode():
        for n, i, o in SHAPES:
            x = torch.randn(n, i)
            linear = torch.nn.Linear(i, o)
            rates[f"{n}x{i}x{o}"] = _median_rate(lambda: linear(x), 2 * n * i * o)
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return {"rates": rates, "library": f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS "
                                      f"{blas.group(1) if blas else 'unknown'}"}


def _child(python, system):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if system == "TensorFlow, Eigen":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    return child_result([python, __file__, "--child=" + ("torch" if system == "PyTorch" else "tf")], env=env)[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["tf", "torch"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch_python", default=sys.executable)
    parser.add_argument("--results_name", default="matmul_kernels")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child_tensorflow() if args.child == "tf" else child_torch()), flush=True)
        return
    rounds = []
    for index in range(args.rounds):
        this = {system: _child(sys.executable if system != "PyTorch" else args.torch_python, system)
                for system in SYSTEMS}
        print(f"[{index + 1}] " + "; ".join(f"{s}: " + " ".join(f"{r:.0f}" for r in this[s]["rates"].values())
                                          for s in SYSTEMS), flush=True)
        rounds.append(this)
    rows = {system: {"library": rounds[0][system]["library"],
                     "rates": {shape: statistics.median(r[system]["rates"][shape] for r in rounds)
                               for shape in rounds[0][system]["rates"]},
                     "rounds": [r[system]["rates"] for r in rounds]} for system in SYSTEMS}
    write_results(args.results_name, {"rows": rows, "shapes": SHAPES}, table(rows, args))


def table(rows, args):
    command = shlex.join(["python", "bench/matmul_kernels.py",
                          *(a for a in sys.argv[1:] if not a.startswith("--torch_python"))])
    lines = ["# fp32 matmul + bias at MiniLM's projection shapes: TensorFlow's kernels and PyTorch's, same run", "",
             f"Command: `{command}`; GFLOP/s, medians of {args.rounds} interleaved rounds, each system a fresh "
             "process (each rate itself the median of 7 timings of 20 calls). N = tokens per batch (864: SST-2 dev "
             "32 x 27; 1,280: SQuAD 8 x 160; 3,072: 8 x 384).", "",
             "| N x I x O | " + " | ".join(SYSTEMS) + " | TensorFlow oneDNN / PyTorch |",
             "|---|" + "---:|" * (len(SYSTEMS) + 1)]
    for shape in rows["PyTorch"]["rates"]:
        rates = [rows[s]["rates"][shape] for s in SYSTEMS]
        lines.append(f"| {shape} | " + " | ".join(f"{r:.0f}" for r in rates) + f" | {rates[0] / rates[-1]:.2f}x |")
    return lines + [""] + [f"- {s}: {rows[s]['library']}" for s in SYSTEMS]


if __name__ == "__main__":
    main()
