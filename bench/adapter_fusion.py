"""AdapterFusion on a small task (issue 25): RTE with the knowledge of adapters trained on other tasks.

Source adapters: Pfeiffer adapters (size 64, the base's LayerNorms left as they are, as AdapterHub trains them),
trained by run_classifier.py on the packaged all-MiniLM-L6-v2, 1 epoch, lr 1e-3, seed 0: QNLI (question answering
as entailment, the task nearest RTE; ../shared/data has its 5,463 dev pairs only, which serve here as its training
data), STS-B (all 5,749 pairs, regression), MRPC (all 3,668 pairs), SST-2 (the first 8,000 sentences), and RTE's own
(all 2,490 pairs, 3 epochs). Then on RTE (3 epochs, batch 32, max length 128), 3 seeds,
interleaved:
    rte adapter      a Pfeiffer adapter trained on RTE alone (the seed's own run)
    fusion           AdapterFusion over the four adapters (--adaptation=fusion; the fusion and the head train)
    full             full fine-tuning, lr 5e-5 (the reference)
Dev accuracy on the 277 RTE dev pairs (majority class 52.7%).

    python bench/adapter_fusion.py                    # writes results/adapter_fusion.{json,md}
    python bench/adapter_fusion.py --seeds=0 --fusion_lr=1e-4,5e-4,2e-3 --results_name=adapter_fusion_scan
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, timed_process, write_results  # noqa: E402

SEQ, BATCH = 128, 32
PFEIFFER = ["--adaptation=adapters", "--adapter_kind=pfeiffer", "--adapter_size=64", "--notrain_layer_norms"]
SOURCES = {  # name -> (GLUE task, directory, flags); QNLI trains on its dev file (see the module docstring)
    "qnli": ("qnli", "QNLI", ["--learning_rate=1e-3", "--num_train_epochs=1"]),
    "stsb": ("sts-b", "STS-B", ["--learning_rate=1e-3", "--num_train_epochs=1"]),
    "mrpc": ("mrpc", "MRPC", ["--learning_rate=1e-3", "--num_train_epochs=1"]),
    "sst2": ("sst2", "SST-2", ["--max_train_examples=8000", "--learning_rate=1e-3", "--num_train_epochs=1"]),
}
RTE_EPOCHS = 3
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def run(task, directory, flags, output_dir, seed=0, evaluate=True):
    data_dir = SHARED_DATA / "glue_data" / directory
    if not (data_dir / "train.tsv").is_file():  # QNLI: its dev pairs as training data, in a directory of their own
        data_dir = pathlib.Path(output_dir + "_data")
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "train.tsv").symlink_to(SHARED_DATA / "glue_data" / directory / "dev.tsv")
        evaluate = False
    command = [sys.executable, str(REPO / "run_classifier.py"), f"--task_name={task}",
               f"--data_dir={data_dir}", "--do_train", f"--output_dir={output_dir}",
               f"--max_seq_length={SEQ}", f"--train_batch_size={BATCH}", f"--eval_batch_size={BATCH}",
               f"--seed={seed}", "--save_checkpoints_steps=100000", *(["--do_eval"] if evaluate else []), *flags]
    _, wall, _ = timed_process(command, env=ENV)
    with open(os.path.join(output_dir, "final", "model_card.json"), encoding="utf-8") as f:
        card = json.load(f)
    return {"command": shown_command(command[1:]), "process_wall_s": wall, "metrics": card["metrics"],
            "trainable": card["parameters"]["trainable"], "training_s": card["training"]["seconds"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fusion_lr", default="5e-4", help="one rate, or several (comma-separated): a row each")
    parser.add_argument("--adapter_lr", default="1e-3")
    parser.add_argument("--results_name", default="adapter_fusion")
    args = parser.parse_args()
    fusion_rates = args.fusion_lr.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for name, (task, directory, flags) in SOURCES.items():
            sources[name] = run(task, directory, PFEIFFER + flags, os.path.join(tmp, name))
            print(f"source {name}: {sources[name]['metrics']} in {sources[name]['process_wall_s']:.0f} s", flush=True)
        rows = []
        rte_flags = [f"--num_train_epochs={RTE_EPOCHS}"]
        for seed in seeds:
            own = os.path.join(tmp, f"rte_{seed}")
            rows.append({"setup": "rte adapter", "seed": seed,
                         **run("rte", "RTE", PFEIFFER + rte_flags + [f"--learning_rate={args.adapter_lr}"], own,
                               seed)})
            members = ",".join([f"{n}:{os.path.join(tmp, n)}" for n in SOURCES] + [f"rte:{own}"])
            for rate in fusion_rates:
                rows.append({"setup": f"fusion, lr {rate}", "seed": seed, **run(
                    "rte", "RTE", rte_flags + ["--adaptation=fusion", f"--fuse_adapters={members}",
                                               f"--learning_rate={rate}"], os.path.join(tmp, f"fusion_{seed}_{rate}"),
                    seed)})
            rows.append({"setup": "full", "seed": seed, **run(
                "rte", "RTE", rte_flags + ["--adaptation=full", "--learning_rate=5e-5"],
                os.path.join(tmp, f"full_{seed}"), seed)})
            for row in rows[-(2 + len(fusion_rates)):]:
                print(f"{row['setup']:12s} seed {seed}: acc {100 * row['metrics']['eval_accuracy']:.2f}% "
                      f"({row['trainable']:,} trained) in {row['process_wall_s']:.0f} s", flush=True)
    summary = {}
    for setup in ["rte adapter"] + [f"fusion, lr {rate}" for rate in fusion_rates] + ["full"]:
        accuracies = [r["metrics"]["eval_accuracy"] for r in rows if r["setup"] == setup]
        summary[setup] = {"mean": statistics.mean(accuracies),
                          "std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
                          "runs": accuracies,
                          "trainable": next(r["trainable"] for r in rows if r["setup"] == setup),
                          "training_s": statistics.median(r["training_s"] for r in rows if r["setup"] == setup)}
    lines = ["# AdapterFusion on RTE: adapters of other tasks combined for a small one", "",
             f"all-MiniLM-L6-v2. Source Pfeiffer adapters (size 64, LayerNorms not trained), 1 epoch, lr 1e-3, seed 0: "
             "QNLI (its 5,463 dev pairs: the train file is not in ../shared/data), STS-B, MRPC, SST-2 (first 8,000); "
             "the RTE adapter of each seed joins the fusion. "
             f"RTE: {RTE_EPOCHS} epochs, batch {BATCH}, max length {SEQ}; dev accuracy on 277 pairs (majority class "
             f"52.7%). RTE adapter lr {args.adapter_lr}, full fine-tuning 5e-5. Command: "
             f"`{shown_command(sys.argv)}`.", "",
             "| source adapter | its dev metric |", "|---|---|"]
    for name, source in sources.items():
        lines.append(f"| {name} | " + (", ".join(f"{k} {v:.4f}" for k, v in source["metrics"].items()
                                                  if k.startswith("eval_") and k != "eval_loss") or
                                        "(trained on its dev file)") + " |")
    lines += ["", "| RTE setup | trained parameters | dev accuracy (mean ± std) | runs | training s (median) |",
              "|---|---:|---:|---|---:|"]
    for setup, s in summary.items():
        std = "" if s["std"] is None else f" ± {100 * s['std']:.2f}"
        lines.append(f"| {setup} | {s['trainable']:,} | {100 * s['mean']:.2f}%{std} | "
                     f"{', '.join(f'{100 * a:.1f}' for a in s['runs'])} | {s['training_s']:.0f} |")
    write_results(args.results_name, {"sources": sources, "rows": rows, "summary": summary,
                                     "fusion_lr": args.fusion_lr, "adapter_lr": args.adapter_lr}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
