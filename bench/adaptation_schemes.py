"""Issue 9's table: which adaptation scheme to use when, from our own numbers.

    python bench/adaptation_schemes.py                     # all tasks and schemes, 3 seeds, 1 epoch (hours)
    python bench/adaptation_schemes.py --tasks=RTE --schemes=full,adapters --seeds=0

The packaged all-MiniLM-L6-v2 fine-tuned with run_classifier.py (each run is the real command line in its own
process) on SST-2-8k (the first 8,000 SST-2 training sentences) and RTE (2,490 training pairs: small, where the seeds
say these schemes matter), scored on the full dev sets. One epoch by default (`--epochs`): on this 2-core CPU a
3-epoch RTE run takes ~10 minutes, so the 3-seed table at 3 epochs would take a day. Every scheme x seed: mean and standard deviation
over seeds of the dev accuracy, and the training time. Derived rows: the ensemble of the full fine-tuning seeds
(probabilities averaged, `adaptation.ensembling`) and a 3-layer student distilled from that ensemble. Multi-task:
RTE with MRPC (`--auxiliary_tasks`); on SST-2-8k the multi-task row is the auxiliary masked-LM one.

Finished runs are kept in bench/results/tmp/adaptation_schemes/ and skipped when the script is run again, so an
interrupted benchmark continues; delete that directory to start over.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, RESULTS, SHARED_DATA, shown_command, write_results  # noqa: E402

WORK = RESULTS / "tmp" / "adaptation_schemes"
TASKS = {"SST-2-8k": ("SST-2", 8000), "RTE": ("RTE", None)}
COMMON = ["--max_seq_length=128", "--train_batch_size=32", "--eval_batch_size=64", "--warmup_proportion=0.1"]
SCHEMES = {
    "full": ("full fine-tuning, lr 5e-5 (BERT's AdamW, linear schedule)", ["--learning_rate=5e-5"]),
    "discriminative": ("layer-wise lr: 1e-4 x 0.8^depth", ["--learning_rate=1e-4", "--layerwise_lr_decay=0.8"]),
    "gradual": ("gradual unfreezing + slanted triangular lr 1e-4 (ULMFiT)",
                ["--learning_rate=1e-4", "--unfreezing=gradual", "--lr_schedule=slanted_triangular"]),
    "l2sp": ("full, lr 5e-5, L2-SP alpha 0.01 (no weight decay)", ["--learning_rate=5e-5", "--l2sp=0.01"]),
    "aux_mlm": ("full, lr 5e-5, + 0.5 x masked-LM on the task text", ["--learning_rate=5e-5",
                                                                     "--aux_mlm_weight=0.5"]),
    "adapters": ("Houlsby adapters 64, lr 1e-3", ["--adaptation=adapters", "--adapter_size=64",
                                                 "--learning_rate=1e-3"]),
    "scalar_mix": ("frozen encoder, scalar mix of all layers + linear head, lr 1e-2",
                   ["--adaptation=feature_extraction", "--features=scalar_mix", "--learning_rate=1e-2"]),
    "distilled": ("3-layer student from the full-FT ensemble (T 2, alpha 0.5), lr 1e-4",
                  ["--student_layers=3", "--learning_rate=1e-4", "--distill_temperature=2",
                   "--distill_alpha=0.5"]),
    "multitask": ("full, lr 5e-5, + a second GLUE task on the shared encoder (equal-sized, proportional sampling)",
                  ["--learning_rate=5e-5"]),
}
# multitask: the auxiliary task per target task, capped at the target's training-set size so that proportional
# sampling alternates evenly. MRPC for RTE: a sentence-pair task too (../shared has no MNLI or QNLI train).
MULTITASK_PARTNER = {"RTE": ("MRPC", 2490)}


def run_dir(task, scheme, seed, epochs):
    """Where one run's outputs and its cached result (bench.json) live."""
    return WORK / f"{task}-{scheme}-{seed}-{epochs:g}ep"


def run(task, scheme, seed, epochs):
    """One run_classifier.py process; its result dict (cached in WORK)."""
    out = run_dir(task, scheme, seed, epochs)
    record = out / "bench.json"
    if record.is_file():
        return json.loads(record.read_text())
    name, limit = TASKS[task]
    command = [sys.executable, str(REPO / "run_classifier.py"), f"--task_name={name}",
               f"--data_dir={SHARED_DATA / 'glue_data' / name}", f"--output_dir={out}", "--do_train", "--do_eval",
               f"--seed={seed}", f"--num_train_epochs={epochs:g}", *COMMON, *SCHEMES[scheme][1]]
    if scheme == "multitask":
        partner, limit = MULTITASK_PARTNER[task]
        command.append(f"--auxiliary_tasks={partner}:{SHARED_DATA / 'glue_data' / partner}")
    if limit:
        command.append(f"--max_train_examples={limit}")
    if scheme == "full":
        command.append("--write_train_probabilities")
    if scheme == "distilled":
        teachers = [run_dir(task, "full", s, epochs) / "train_probabilities.tsv" for s in (0, 1, 2)]
        missing = [str(t) for t in teachers if not t.is_file()]
        if missing:
            raise SystemExit(f"distilled needs the three full fine-tuning runs first: {missing}")
        command.append("--teacher_probabilities=" + ",".join(str(t) for t in teachers))
    if out.exists():
        import shutil

        shutil.rmtree(out)  # an unfinished run: start it again
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{task} {scheme} seed {seed} failed:\n{result.stderr[-3000:]}")
    with open(out / "eval_results.txt", encoding="utf-8") as f:
        metrics = {k: float(v) for k, v in (line.strip().split(" = ") for line in f if " = " in line)}
    train_s = [line for line in result.stderr.splitlines() if "Trained to step" in line]
    data = {"task": task, "scheme": scheme, "seed": seed, "epochs": epochs, "metrics": metrics, "wall_s": seconds,
            "train_examples_per_s": float(train_s[-1].split("; ")[-1].split(" ")[0]) if train_s else None,
            "command": shown_command(command[1:])}
    record.write_text(json.dumps(data, indent=2))
    return data


def ensemble(task, seeds, epochs):
    from tfx_transfer.adaptation.ensembling import average_probabilities, read_probabilities
    from tfx_transfer.data.glue import get_processor
    from tfx_transfer.metrics.glue import compute

    name, _ = TASKS[task]
    processor = get_processor(name)
    dev = processor.dev_examples(str(SHARED_DATA / "glue_data" / name))
    index = {label: i for i, label in enumerate(processor.labels)}
    labels = [index[e.label] for e in dev]
    probabilities = average_probabilities([read_probabilities(
        str(run_dir(task, "full", s, epochs) / "eval_probabilities.tsv"))
                                           for s in seeds])
    return compute(processor.metrics, labels, probabilities.argmax(axis=1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--cached_only", action="store_true", help="tabulate finished runs only; start none")
    parser.add_argument("--note", default="", help="a sentence for the results' header (e.g. what shared the CPU)")
    args = parser.parse_args()
    tasks, schemes = args.tasks.split(","), args.schemes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    for task in tasks:
        for scheme in schemes:
            if scheme == "multitask" and task not in MULTITASK_PARTNER:
                print(f"{task} multitask: no auxiliary task chosen for it (MULTITASK_PARTNER); skipped", flush=True)
                continue
            for seed in seeds:
                if args.cached_only and not (run_dir(task, scheme, seed, args.epochs) / "bench.json").is_file():
                    continue
                r = run(task, scheme, seed, args.epochs)
                results.append(r)
                print(task, scheme, seed, f"acc {r['metrics'].get('eval_accuracy', 0):.4f}",
                      f"{r['wall_s']:.0f} s", flush=True)
    lines = ["# Adaptation schemes: which to use when (packaged all-MiniLM-L6-v2)", "",
             f"run_classifier.py, max_seq_length 128 (length-bucketed), batch 32, {args.epochs:g} epoch(s), warmup/cut "
             "fraction 0.1, "
             f"seeds {', '.join(map(str, seeds))}; dev accuracy mean ± std over seeds; train time = wall time of the "
             "whole command (model load, training, dev evaluation) on this 2-core CPU. "
             "Command: `python bench/adaptation_schemes.py`." + (f" {args.note}" if args.note else ""), ""]
    summary = {}
    for task in tasks:
        lines += [f"## {task}", "", "| scheme | settings | runs | dev accuracy | min / max | train ex/s | wall per run |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for scheme in schemes:
            rows = [r for r in results if r["task"] == task and r["scheme"] == scheme]
            if not rows:
                continue
            acc = [r["metrics"]["eval_accuracy"] for r in rows]
            std = statistics.stdev(acc) if len(acc) > 1 else 0.0
            speed = statistics.mean(r["train_examples_per_s"] or 0 for r in rows)
            wall = statistics.mean(r["wall_s"] for r in rows)
            summary[f"{task}/{scheme}"] = {"mean": statistics.mean(acc), "std": std, "runs": acc}
            lines.append(f"| {scheme} | {SCHEMES[scheme][0]} | {len(acc)} | "
                         f"{100 * statistics.mean(acc):.1f} ± {100 * std:.1f} | "
                         f"{100 * min(acc):.1f} / {100 * max(acc):.1f} | {speed:.1f} | {wall:.0f} s |")
        full_runs = [r for r in results if r["task"] == task and r["scheme"] == "full"]
        if len(seeds) >= 2 and len(full_runs) == len(seeds):
            scores = ensemble(task, seeds, args.epochs)
            summary[f"{task}/ensemble"] = scores
            lines.append(f"| ensemble | probabilities of the {len(seeds)} full fine-tuning runs averaged | 1 | "
                         f"{100 * scores['accuracy']:.1f} | – | – | – |")
        lines.append("")
    write_results("adaptation_schemes", {"results": results, "summary": summary}, lines)


if __name__ == "__main__":
    main()
