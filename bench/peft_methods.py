"""Parameter-efficient methods against full fine-tuning, as users run them: `run_classifier.py` on SST-2-8k (and
RTE and MRPC with `--task`).

The packaged all-MiniLM-L6-v2; the first 8,000 SST-2 train rows, batch 32, max length 64 (batches padded to their
own longest row, the default), 10% warmup + linear decay, weight decay 0.01, accuracy on the 872 dev rows. RTE (all
2,490 pairs) and MRPC (all 3,668): 3 epochs, max length 128, the task's dev set (MRPC: accuracy and F1). Each run
is a fresh process; its numbers are run_classifier's own (final/model_card.json) plus the adapter file's size.
Rows run interleaved seed by seed (full, houlsby, ..., then the next seed), so machine phases hit every method.

    python bench/peft_methods.py                         # the main methods (MAIN), seeds 0 1 2
    python bench/peft_methods.py --seeds=0 --methods=full,ia3
    python bench/peft_methods.py --task=rte --results_name=peft_methods_rte
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, timed_process, write_results  # noqa: E402

BATCH, WARMUP = 32, 0.1
TASKS = {  # --task -> (run_classifier's --task_name, GLUE directory, training rows (None: all), epochs, max length)
    "sst2": ("sst2", "SST-2", 8000, 1.0, 64),
    "rte": ("rte", "RTE", None, 3.0, 128),
    "mrpc": ("mrpc", "MRPC", None, 3.0, 128),
}
# method -> (run_classifier flags, what the row says). Learning rates: full fine-tuning's is BERT's; the others
# were chosen on seed 0 (bench/results/peft_methods.md lists the scans).
METHODS = {
    "full": (["--adaptation=full", "--learning_rate=5e-5"], "full fine-tuning"),
    "houlsby": (["--adaptation=adapters", "--adapter_kind=houlsby", "--adapter_size=64", "--learning_rate=1e-3"],
                "Houlsby adapters, size 64 (+ LayerNorms), lr 1e-3"),
    "lora": (["--adaptation=lora", "--lora_rank=8", "--learning_rate=1e-3"],
             "LoRA r=8, alpha 16, query + value, lr 1e-3"),
    "ia3": (["--adaptation=adapters", "--adapter_kind=ia3", "--learning_rate=3e-2"],
            "(IA)^3: keys, values, FFN activations, lr 3e-2"),
    # (IA)^3's steps are ~1.4x faster than full fine-tuning's; its second epoch is the cheapest accuracy here.
    "ia3_2ep": (["--adaptation=adapters", "--adapter_kind=ia3", "--learning_rate=3e-2", "--num_train_epochs=2"],
                "(IA)^3, 2 epochs"),
    "prefix": (["--adaptation=adapters", "--adapter_kind=prefix", "--prefix_length=20", "--learning_rate=5e-2"],
               "prefix tuning, P=20, trained directly, lr 5e-2"),
    # The methods of issue 25's second round, each with its paper's or AdapterHub's shape; rates from seed-0 scans.
    "compacter": (["--adaptation=adapters", "--adapter_kind=compacter", "--adapter_size=12", "--learning_rate=3e-3"],
                  "Compacter (PHM n=4, rank 1), m=12, lr 3e-3"),
    "compacter_1e-2": (["--adaptation=adapters", "--adapter_kind=compacter", "--adapter_size=12",
                        "--learning_rate=1e-2"], "Compacter (PHM n=4, rank 1), m=12, lr 1e-2"),
    "prompt": (["--adaptation=adapters", "--adapter_kind=prompt", "--prompt_length=20", "--learning_rate=3e-2"],
               "prompt tuning, P=20 (vocabulary init), lr 3e-2"),
    "prompt_1e-1": (["--adaptation=adapters", "--adapter_kind=prompt", "--prompt_length=20", "--learning_rate=1e-1"],
                    "prompt tuning, P=20 (vocabulary init), lr 1e-1"),
    "mam": (["--adaptation=adapters", "--adapter_kind=mam", "--learning_rate=1e-3"],
            "MAM: prefix P=30 + parallel FFN adapter 192 x4, lr 1e-3"),
    "mam_5e-3": (["--adaptation=adapters", "--adapter_kind=mam", "--learning_rate=5e-3"], "MAM, lr 5e-3"),
    "unipelt": (["--adaptation=adapters", "--adapter_kind=unipelt", "--learning_rate=1e-3"],
                "UniPELT: gated LoRA r=8 + prefix P=10 + Pfeiffer 24, lr 1e-3"),
    "unipelt_5e-3": (["--adaptation=adapters", "--adapter_kind=unipelt", "--learning_rate=5e-3"],
                     "UniPELT: gated LoRA r=8 + prefix P=10 + Pfeiffer 24, lr 5e-3"),
    # AdapterDrop (Rücklé et al. 2021): Houlsby adapters in the top layers only; nothing trains below them.
    "adapterdrop_2": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=1e-3", "--adapter_drop=2"],
                      "AdapterDrop: Houlsby 64 in layers 2-5 only, lr 1e-3"),
    "adapterdrop_3": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=1e-3", "--adapter_drop=3"],
                      "AdapterDrop: Houlsby 64 in layers 3-5 only, lr 1e-3"),
    # The Houlsby recipe scan (issue 25: within 0.5 point of full fine-tuning?) and full fine-tuning's second epoch.
    "full_2ep": (["--adaptation=full", "--learning_rate=5e-5", "--num_train_epochs=2"], "full fine-tuning, 2 epochs"),
    "houlsby_5e-4": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=5e-4"], "Houlsby 64, lr 5e-4"),
    "houlsby_2e-3": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=2e-3"],
                     "Houlsby adapters, size 64 (+ LayerNorms), lr 2e-3"),
    "houlsby_4e-3": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=4e-3"], "Houlsby 64, lr 4e-3"),
    "houlsby_init1e-3": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=1e-3",
                          "--adapter_init_stddev=1e-3"], "Houlsby 64, lr 1e-3, init 1e-3 (adapter-bert's code)"),
    "houlsby_256": (["--adaptation=adapters", "--adapter_size=256", "--learning_rate=1e-3"], "Houlsby 256, lr 1e-3"),
    "houlsby_2ep": (["--adaptation=adapters", "--adapter_size=64", "--learning_rate=1e-3", "--num_train_epochs=2"],
                    "Houlsby 64, lr 1e-3, 2 epochs"),
}


# The main table's rows (`--methods` default): each method at its chosen rate; the rest of METHODS are scans.
MAIN = ("full", "houlsby_2e-3", "adapterdrop_2", "unipelt_5e-3", "mam", "compacter_1e-2", "ia3", "lora", "prefix",
        "prompt_1e-1")


def command(flags, output_dir, seed, task="sst2"):
    name, directory, rows, epochs, length = TASKS[task]
    return [sys.executable, str(REPO / "run_classifier.py"), f"--task_name={name}",
            f"--data_dir={SHARED_DATA / 'glue_data' / directory}",
            *([f"--max_train_examples={rows}"] if rows else []), "--do_train",
            "--do_eval", f"--output_dir={output_dir}", f"--train_batch_size={BATCH}", f"--eval_batch_size={BATCH}",
            f"--max_seq_length={length}", f"--num_train_epochs={epochs}", f"--seed={seed}",
            f"--warmup_proportion={WARMUP}", "--save_checkpoints_steps=100000", *flags]


def run(method, seed, task="sst2"):
    flags = list(METHODS[method][0])  # a method's own --num_train_epochs wins over the task's
    with tempfile.TemporaryDirectory() as out:
        _, wall, rss = timed_process(command(flags, out, seed, task), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        with open(os.path.join(out, "final", "model_card.json"), encoding="utf-8") as f:
            card = json.load(f)
        adapter = os.path.join(out, "final", "adapter.safetensors")
        adapter_bytes = os.path.getsize(adapter) if os.path.isfile(adapter) else None
    training = card["training"]
    return {"method": method, "seed": seed, "epochs": card["options"]["training"]["num_train_epochs"], "flags": flags,
            "dev_accuracy": card["metrics"]["eval_accuracy"], "dev_f1": card["metrics"].get("eval_f1"),
            "trainable": card["parameters"]["trainable"],
            "trainable_fraction": card["parameters"]["trainable_fraction"],
            "train_examples_per_s": training.get("steady_examples_per_s") or training["examples_per_s"],
            "epoch_wall_s": training["seconds"], "first_step_s": training.get("first_step_seconds"),
            "dev_inference_examples_per_s": card["evaluation"]["examples_per_s"],
            "adapter_file_bytes": adapter_bytes, "process_wall_s": wall, "peak_rss_gib": rss}


def summarise(rows):
    by_method = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    summary = {}
    for method, runs in by_method.items():
        accuracies = [r["dev_accuracy"] for r in runs]
        summary[method] = {
            "seeds": [r["seed"] for r in runs], "dev_accuracy_mean": statistics.mean(accuracies),
            "dev_accuracy_std": statistics.stdev(accuracies) if len(runs) > 1 else None,
            **{k: statistics.median(r[k] for r in runs) for k in ("train_examples_per_s", "epoch_wall_s",
                                                                  "dev_inference_examples_per_s", "process_wall_s")},
            "trainable": runs[0]["trainable"], "trainable_fraction": runs[0]["trainable_fraction"],
            "adapter_file_bytes": runs[0]["adapter_file_bytes"],
            "dev_f1_mean": statistics.mean(r["dev_f1"] for r in runs) if runs[0].get("dev_f1") is not None else None}
    return summary


def table(summary, argv, task="sst2"):
    full = summary.get("full")
    name, directory, rows, epochs, length = TASKS[task]
    data = f"first {rows:,} {directory} train rows" if rows else f"all {directory} train rows"
    lines = [f"# Parameter-efficient methods vs full fine-tuning: {directory}, run_classifier.py, all-MiniLM-L6-v2", "",
             f"{data.capitalize()}, {epochs:g} epoch(s) unless the row says otherwise, batch 32, max length {length} "
             "padded per batch, 10% warmup, wd 0.01; the dev set. Each run a fresh process, numbers from its model "
             f"card; runs interleaved by seed. Command: `{shown_command(argv)}`.", "",
             "| method | trainable | seeds | dev acc (mean ± std) | vs full | train ex/s (steady) | epoch s | "
             "dev predict ex/s (raw text) | adapter file |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method, s in summary.items():
        std = "" if s["dev_accuracy_std"] is None else f" ± {100 * s['dev_accuracy_std']:.2f}"
        delta = "" if full is None or method == "full" else \
            f"{100 * (s['dev_accuracy_mean'] - full['dev_accuracy_mean']):+.2f}"
        size = "" if s["adapter_file_bytes"] is None else f"{s['adapter_file_bytes'] / 1e3:,.0f} kB"
        f1 = "" if s.get("dev_f1_mean") is None else f" (F1 {100 * s['dev_f1_mean']:.2f})"
        lines.append(f"| {METHODS[method][1]} | {100 * s['trainable_fraction']:.3f}% ({s['trainable']:,}) | "
                     f"{len(s['seeds'])} | {100 * s['dev_accuracy_mean']:.2f}%{std}{f1} | {delta} | "
                     f"{s['train_examples_per_s']:.1f} | {s['epoch_wall_s']:.0f} | "
                     f"{s['dev_inference_examples_per_s']:.0f} | {size} |")
    lines += ["", "Trainable counts include the classifier head (770 for 2 classes). Full fine-tuning writes no "
              "adapter file (final/model.keras: 91 MB)."]
    return lines


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default=",".join(MAIN), help=f"of {', '.join(METHODS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--results_name", default="peft_methods", help="results/<name>.{json,md} (scans: another "
                        "name, so the main table stays)")
    parser.add_argument("--task", default="sst2", choices=sorted(TASKS))
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {list(METHODS)}")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in methods:
            rows.append(run(method, seed, args.task))
            r = rows[-1]
            print(f"{method:8s} seed {seed}: acc {100 * r['dev_accuracy']:.2f}%  train {r['train_examples_per_s']:.1f} "
                  f"ex/s  predict {r['dev_inference_examples_per_s']:.0f} ex/s  wall {r['process_wall_s']:.0f} s",
                  flush=True)
        summary = summarise(rows)  # after every seed, so a stopped run keeps its finished seeds
        write_results(args.results_name, {"rows": rows, "summary": summary, "task": args.task},
                      table(summary, sys.argv, args.task))


if __name__ == "__main__":
    main()
