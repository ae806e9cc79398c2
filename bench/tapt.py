"""Task-adaptive pretraining (TAPT, Gururangan et al. 2020) on SST-2 (issue 24): does continued masked-LM
pretraining on the task's own 67,349 training sentences (labels unused) help the SST-2-8k protocol at this size?

    python bench/tapt.py [--seeds=0,1,2] [--tapt_steps=N] [--work_dir=DIR]   # results/tapt.{json,md}

Per seed s, each step a whole script as a user runs it (packaged all-MiniLM-L6-v2, which ships without a masked-LM
head, so run_pretraining.py starts a new head and trains it alone for the first 10% of the updates):
  1. `run_pretraining.py --task_name=SST-2` (train texts = the training sentences, held-out = the 872 dev
     sentences), batch 32, seq 64, AdamW lr 1e-4, 10% warmup, --seed=s, for one epoch (or --tapt_steps);
  2. `run_classifier.py --init_checkpoint=<1>/final` on SST-2-8k (the design document's protocol, --seed=s);
  3. the same SST-2-8k run from the packaged model (no TAPT), --seed=s.
Masked-LM accuracy on the dev sentences (masks fixed by the seed): after TAPT, and "before" as two references:
the new head untrained (chance), and the head trained alone for the same budget on the frozen encoder
(`--adaptation=feature_extraction`, seed 0 only): what the encoder knows before it is adapted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, timed_process, write_results  # noqa: E402

SST2 = SHARED_DATA / "glue_data" / "SST-2"
SEQ, BATCH = 64, 32
TAPT = ["--task_name=SST-2", f"--data_dir={SST2}", f"--max_seq_length={SEQ}", f"--train_batch_size={BATCH}",
        f"--eval_batch_size={BATCH}", "--learning_rate=1e-4", "--warmup_proportion=0.1", "--weight_decay=0.01",
        "--save_checkpoints_steps=100000"]
FINE_TUNE = ["--task_name=SST-2", f"--data_dir={SST2}", "--max_train_examples=8000", "--do_train", "--do_eval",
             f"--max_seq_length={SEQ}", f"--train_batch_size={BATCH}", f"--eval_batch_size={BATCH}",
             "--learning_rate=5e-5", "--num_train_epochs=1", "--warmup_proportion=0.1", "--weight_decay=0.01",
             "--save_checkpoints_steps=100000"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
SST2_SEQUENCES = 67353  # the 67,349 training sentences packed at seq 64 (4 are longer than a sequence)


def _results(out):
    """eval_results.txt as {key: float}."""
    values = {}
    for line in open(os.path.join(out, "eval_results.txt"), encoding="utf-8"):
        key, _, value = line.partition(" = ")
        values[key.strip()] = float(value)
    return values


def _run(script, out, arguments, scratch):
    command = [sys.executable, str(REPO / script), f"--output_dir={out}", *arguments]
    _, wall, rss = timed_process(command, env=ENV)
    shown = shown_command(["python", *command[1:]]).replace(scratch, "<scratch>")
    return {**_results(out), "process_wall_s": wall, "peak_rss_gib": rss, "command": shown}


def _budget(steps):
    return [f"--num_train_steps={steps}"] if steps else ["--num_train_epochs=1"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tapt_steps", type=int, default=0, help="TAPT updates (0: one epoch of the 67,349).")
    parser.add_argument("--work_dir", default=None)
    args = parser.parse_args()
    if not (SST2 / "train.tsv").is_file():
        raise SystemExit(f"{SST2} not found: set TFX_SHARED_DATA to ../shared/data.")
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
        untrained = _run("run_pretraining.py", os.path.join(scratch, "untrained"), [*TAPT, "--do_eval", "--seed=0"],
                         scratch)
        print("untrained head", untrained, flush=True)
        head_only = _run("run_pretraining.py", os.path.join(scratch, "head_only"),
                         [*TAPT, "--do_train", "--do_eval", "--seed=0", "--adaptation=feature_extraction",
                          "--learning_rate=1e-3", *_budget(args.tapt_steps)], scratch)
        print("head only", head_only, flush=True)
        runs = []
        for seed in seeds:  # interleaved: TAPT, fine-tune from it, fine-tune without it, seed by seed
            tapt_dir = os.path.join(scratch, f"tapt_{seed}")
            tapt = _run("run_pretraining.py", tapt_dir,
                        [*TAPT, "--do_train", "--do_eval", f"--seed={seed}", *_budget(args.tapt_steps)], scratch)
            with_tapt = _run("run_classifier.py", os.path.join(scratch, f"with_{seed}"),
                             [*FINE_TUNE, f"--seed={seed}", f"--init_checkpoint={os.path.join(tapt_dir, 'final')}"],
                             scratch)
            without = _run("run_classifier.py", os.path.join(scratch, f"without_{seed}"),
                           [*FINE_TUNE, f"--seed={seed}"], scratch)
            runs.append({"seed": seed, "tapt": tapt, "with_tapt": with_tapt, "without_tapt": without})
            print(runs[-1], flush=True)
    write_results("tapt", {"untrained_head": untrained, "head_only": head_only, "runs": runs,
                           "tapt_steps": args.tapt_steps or "one epoch"}, table(untrained, head_only, runs))


def _mean_std(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(untrained, head_only, runs):
    def pct(values):
        mean, std = _mean_std([100 * v for v in values])
        return f"{mean:.2f} ± {std:.2f}"

    tapt = [r["tapt"] for r in runs]
    with_acc = [r["with_tapt"]["eval_accuracy"] for r in runs]
    without_acc = [r["without_tapt"]["eval_accuracy"] for r in runs]
    diffs = [a - b for a, b in zip(with_acc, without_acc)]
    n = len(runs)
    lines = ["# TAPT on SST-2's training sentences, then SST-2-8k (bench/tapt.py)", "",
             f"Packaged all-MiniLM-L6-v2; TAPT = run_pretraining.py on the 67,349 training sentences (labels unused), "
             f"batch {BATCH}, seq {SEQ}, lr 1e-4, {int(tapt[0]['global_step'])} updates "
             f"({int(tapt[0]['global_step']) * BATCH:,} sequences, "
             f"{int(tapt[0]['global_step']) * BATCH / SST2_SEQUENCES:.2f} of an epoch); fine-tuning = the SST-2-8k "
             f"protocol (8,000 rows, 1 epoch, lr 5e-5). {n} seed(s): {', '.join(str(r['seed']) for r in runs)}; "
             "mean ± sample std.", "",
             "## Masked-LM accuracy on the 872 SST-2 dev sentences", "",
             "| model | masked_lm_accuracy | masked_lm_loss | process s |", "|---|---:|---:|---:|",
             f"| packaged MiniLM, new head untrained | {100 * untrained['masked_lm_accuracy']:.2f}% | "
             f"{untrained['masked_lm_loss']:.3f} | {untrained['process_wall_s']:.0f} |",
             f"| packaged MiniLM, head trained alone on the frozen encoder (same budget, seed 0) | "
             f"{100 * head_only['masked_lm_accuracy']:.2f}% | {head_only['masked_lm_loss']:.3f} | "
             f"{head_only['process_wall_s']:.0f} |",
             f"| after TAPT ({n} seeds) | {pct([t['masked_lm_accuracy'] for t in tapt])}% | "
             f"{statistics.mean(t['masked_lm_loss'] for t in tapt):.3f} | "
             f"{statistics.mean(t['process_wall_s'] for t in tapt):.0f} |", "",
             "## SST-2-8k dev accuracy", "",
             "| seed | without TAPT | with TAPT | difference (points) |", "|---:|---:|---:|---:|"]
    for r, d in zip(runs, diffs):
        lines.append(f"| {r['seed']} | {100 * r['without_tapt']['eval_accuracy']:.2f}% | "
                     f"{100 * r['with_tapt']['eval_accuracy']:.2f}% | {100 * d:+.2f} |")
    mean_diff, std_diff = _mean_std([100 * d for d in diffs])
    lines += [f"| mean ± std | {pct(without_acc)}% | {pct(with_acc)}% | {mean_diff:+.2f} ± {std_diff:.2f} |", "",
              "Commands (seed 0):",
              f"- `{untrained['command']}`", f"- `{head_only['command']}`", f"- `{runs[0]['tapt']['command']}`",
              f"- `{runs[0]['with_tapt']['command']}`", f"- `{runs[0]['without_tapt']['command']}`"]
    return lines


if __name__ == "__main__":
    main()
