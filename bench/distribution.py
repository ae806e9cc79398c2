"""Training throughput with 1 and 2 replicas on this 2-core CPU: run_classifier.py, full fine-tuning of the packaged
MiniLM on the first 2,000 SST-2 train rows (1 epoch, global batch 32, max_seq_length 64, lr 5e-5, seed 0).

    python bench/distribution.py          # writes results/distribution.{json,md}; about 10 minutes

Configurations: the default strategy (one device); MirroredStrategy over 2 logical CPU devices
(--num_cpu_devices=2); MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1 (TF_CONFIG). Both
replicas share the same two cores, so no speed-up is expected here: the point of the table is what the
distribution machinery costs, measured honestly. On real accelerators each replica has its own device.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, write_results  # noqa: E402

from tfx_transfer.jobs.distribution import free_local_ports  # noqa: E402

SETUPS = {"default (1 device)": [], "mirrored, 2 logical CPU devices": ["--distribution_strategy=mirrored",
                                                                       "--num_cpu_devices=2"],
          "multi_worker_mirrored, 2 processes": ["--distribution_strategy=multi_worker_mirrored"]}


def _command(output_dir, extra):
    return [sys.executable, os.path.join(REPO, "run_classifier.py"), "--task_name=SST-2",
            f"--data_dir={SHARED_DATA / 'glue_data' / 'SST-2'}", f"--output_dir={output_dir}", "--do_train",
            "--max_train_examples=2000", "--max_seq_length=64", "--train_batch_size=32", "--num_train_epochs=1",
            "--learning_rate=5e-5", "--seed=0", "--save_checkpoints_steps=1000", *extra]


def run(name, extra, output_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    start = time.perf_counter()
    if any("multi_worker" in flag for flag in extra):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_local_ports(2)]}
        processes = [subprocess.Popen(_command(output_dir, extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, env=dict(env, TF_CONFIG=json.dumps(
                                          {"cluster": cluster, "task": {"type": "worker", "index": i}})))
                     for i in range(2)]
        logs = [p.communicate()[1] for p in processes]
        codes = [p.returncode for p in processes]
    else:
        result = subprocess.run(_command(output_dir, extra), capture_output=True, text=True, env=env)
        logs, codes = [result.stderr], [result.returncode]
    seconds = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"{name} failed:\n{logs[0][-3000:]}")
    speed = re.findall(r"Trained to step (\d+) .*?; ([\d.]+) examples/s", logs[0])
    fingerprints = [re.findall(r"fingerprint (\w+)", log)[-1] for log in logs]
    return {"setup": name, "steps": int(speed[-1][0]), "train_examples_per_s": float(speed[-1][1]),
            "wall_s": seconds, "fingerprints": fingerprints, "command": shown_command(_command("<out>", extra)[1:])}


def main():
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, extra) in enumerate(SETUPS.items()):
            r = run(name, extra, os.path.join(tmp, str(i)))
            results.append(r)
            print(name, f"{r['train_examples_per_s']:.1f} ex/s", f"{r['wall_s']:.0f} s", r["fingerprints"], flush=True)
    base = results[0]["train_examples_per_s"]
    lines = ["# Training with 1 and 2 replicas on this 2-core CPU", "",
             "run_classifier.py, full fine-tuning of all-MiniLM-L6-v2 on the first 2,000 SST-2 train rows: 1 epoch "
             "(62 steps), global batch 32, max_seq_length 64 (bucketed), seed 0; each configuration in fresh "
             "processes. Throughput includes the first step's tracing. Both replicas share the same 2 cores, so this "
             "measures the cost of the distribution machinery, not a scaling result. Command: "
             "`python bench/distribution.py`.", "",
             "| setup | train ex/s | vs 1 device | wall s (process start to exit) |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['setup']} | {r['train_examples_per_s']:.1f} | {r['train_examples_per_s'] / base:.2f}x | "
                     f"{r['wall_s']:.0f} |")
    lines += ["", "Multi-worker: both workers end with the same weights fingerprint "
              f"({', '.join(results[-1]['fingerprints'])})."]
    write_results("distribution", {"results": results}, lines)


if __name__ == "__main__":
    main()
