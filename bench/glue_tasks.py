"""run_classifier.py on the full MRPC, RTE and STS-B training sets of ../shared/data, with the packaged MiniLM:
full fine-tuning and Houlsby adapters (size 64). Each run is the real command line, in its own process.

    python bench/glue_tasks.py            # writes results/glue_tasks.{json,md}; about 40 minutes on 2 cores

Settings: max_seq_length 128 (bucketed), batch 32, 3 epochs, warmup 10%, seed 0; lr 5e-5 (full) / 1e-3 (adapters),
google-research/bert's defaults otherwise. Scores are on the dev sets (the GLUE test labels are not public).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, write_results  # noqa: E402

TASKS = ("MRPC", "RTE", "STS-B")
SETUPS = {"full": ["--adaptation=full", "--learning_rate=5e-5"],
          "adapters": ["--adaptation=adapters", "--adapter_size=64", "--learning_rate=1e-3"]}


def run(task, setup, output_dir):
    command = [sys.executable, os.path.join(REPO, "run_classifier.py"), f"--task_name={task}",
               f"--data_dir={SHARED_DATA / 'glue_data' / task}", f"--output_dir={output_dir}", "--do_train",
               "--do_eval", "--max_seq_length=128", "--train_batch_size=32", "--eval_batch_size=32",
               "--num_train_epochs=3", "--seed=0", *SETUPS[setup]]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{task} {setup} failed:\n{result.stderr[-3000:]}")
    with open(os.path.join(output_dir, "eval_results.txt"), encoding="utf-8") as f:
        metrics = {k: float(v) for k, v in (line.strip().split(" = ") for line in f if " = " in line)}
    speed = [line for line in result.stderr.splitlines() if "examples/s" in line and "Trained to step" in line]
    return {"task": task, "setup": setup, "metrics": metrics, "wall_s": seconds,
            "train_examples_per_s": float(speed[-1].split("; ")[-1].split(" ")[0]) if speed else None,
            "command": shown_command(command[1:])}


def main():
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            for setup in SETUPS:
                r = run(task, setup, os.path.join(tmp, f"{task}-{setup}"))
                results.append(r)
                print(task, setup, {k: round(v, 4) for k, v in r["metrics"].items()}, f"{r['wall_s']:.0f} s", flush=True)
    lines = ["# GLUE dev scores: run_classifier.py with the packaged all-MiniLM-L6-v2", "",
             "Full training sets of ../shared/data, 3 epochs, batch 32, max_seq_length 128 (length-bucketed), seed 0; "
             "full fine-tuning at lr 5e-5, Houlsby adapters (size 64, 2.6% of the weights) at lr 1e-3. "
             "Command: `python bench/glue_tasks.py`.", "",
             "| task | setup | official metric | other metrics | train ex/s | wall (train + eval) |",
             "|---|---|---:|---|---:|---:|"]
    for r in results:
        names = list(r["metrics"])
        official = names[0]
        others = ", ".join(f"{k[5:]} {v:.4f}" for k, v in r["metrics"].items() if k not in (official, "global_step"))
        lines.append(f"| {r['task']} | {r['setup']} | {official[5:]} {r['metrics'][official]:.4f} | {others} | "
                     f"{r['train_examples_per_s'] or 0:.1f} | {r['wall_s']:.0f} s |")
    write_results("glue_tasks", {"results": results}, lines)


if __name__ == "__main__":
    main()
