"""Parameter-efficient methods, ours against Hugging Face peft + transformers + PyTorch, in one interleaved run.

SST-2-8k as bench/peers_torch.py runs it (all-MiniLM-L6-v2, first 8,000 train rows, 1 epoch, batch 32, max length
64, 10% warmup + linear decay, weight decay 0.01, clip 1.0; accuracy on the 872 dev rows), each row a whole process
as a user starts it: the Trainer with `group_by_length` and a peft model (`get_peft_model`; its SEQ_CLS task type
trains the classifier head too) against `run_classifier.py` with the method's flags, the same learning rate for
both (ours, chosen on seed 0: bench/results/peft_methods.md). The methods as each library defines them:

  lora     peft LoraConfig(r=8, lora_alpha=16, target_modules=query,value)   ours --adaptation=lora --lora_rank=8
           --notrain_layer_norms (peft trains the LoRA matrices and the head only: 74,498 numbers on both sides)
  ia3      peft IA3Config() (BERT: key, value, attention and FFN output.dense inputs); ours --adapter_kind=ia3
           --ia3_targets=key,value,ffn,attention_output (the same four: 16,898 numbers)
  prompt   peft PromptTuningConfig(num_virtual_tokens=20), random init; ours --adapter_kind=prompt --prompt_length=20
           (vocabulary init); peft prepends its virtual tokens before [CLS], shifting the tokens' positions, ours keep
           them (layers/prompt.py)
Prefix tuning is not compared: with peft 0.21.2 and transformers 5.25, PrefixTuningConfig on
BertForSequenceClassification fails at its first forward pass ("Model does not support past key values which are
required for prefix tuning").

    python bench/peers_peft.py --torch_python=<python with torch, transformers, peft>   # results/peers_peft.{json,md}
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

from common import packaged_model_dir, timed_process, write_results  # noqa: E402
from peers_torch import ours_command, read_ours, run_hf  # noqa: E402

METHODS = {  # method -> (learning rate, our run_classifier flags)
    "lora": (1e-3, ["--adaptation=lora", "--lora_rank=8", "--notrain_layer_norms"]),
    "ia3": (3e-2, ["--adaptation=adapters", "--adapter_kind=ia3", "--ia3_targets=key,value,ffn,attention_output"]),
    "prompt": (1e-1, ["--adaptation=adapters", "--adapter_kind=prompt", "--prompt_length=20"]),
}


def peft_config(method: str):
    from peft import IA3Config, LoraConfig, PromptTuningConfig, TaskType

    return {"lora": lambda: LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0,
                                       target_modules=["query", "value"]),
            "ia3": lambda: IA3Config(task_type=TaskType.SEQ_CLS),
            "prompt": lambda: PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=20)}[method]()


def run_row(side: str, method: str, seed: int, torch_python: str) -> dict:
    rate, flags = METHODS[method]
    if side == "peft":
        stdout, wall, rss = timed_process([torch_python, __file__, f"--child={method}", f"--seed={seed}"])
        result = json.loads([x for x in stdout.splitlines() if x.startswith("RESULT ")][0][len("RESULT "):])
    else:
        with tempfile.TemporaryDirectory() as out:
            command = ours_command(flags, out, seed)
            command[command.index(next(a for a in command if a.startswith("--learning_rate=")))] = \
                f"--learning_rate={rate}"
            _, wall, rss = timed_process(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            result = read_ours(out)
            with open(os.path.join(out, "final", "model_card.json"), encoding="utf-8") as f:
                result["trainable"] = json.load(f)["parameters"]["trainable"]
    return dict(result, process_wall_s=wall, peak_rss_gib=rss, seed=seed, side=side, method=method)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--torch_python", default=sys.executable)
    parser.add_argument("--results_name", default="peers_peft", help="results/<name>.{json,md}")
    args = parser.parse_args()
    if args.child:
        result = run_hf("group_by_length", packaged_model_dir(), args.seed, peft_config(args.child),
                        METHODS[args.child][0])
        print("RESULT " + json.dumps(result), flush=True)
        return
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in args.methods.split(","):
            for side in ("peft", "ours"):
                rows.append(run_row(side, method, seed, args.torch_python))
                r = rows[-1]
                print(f"seed {seed} {method:7s} {side:5s}: acc {100 * r['dev_accuracy']:.2f}%  train "
                      f"{r['train_examples_per_s']:.1f} ex/s  process {r['process_wall_s']:.0f} s  trainable "
                      f"{r['trainable']:,}", flush=True)
        write_table(rows, args)  # after every seed, so a stopped run keeps its finished seeds


def write_table(rows, args):
    summary = {}
    for method in args.methods.split(","):
        for side in ("peft", "ours"):
            runs = [r for r in rows if r["method"] == method and r["side"] == side]
            if not runs:
                continue
            accuracies = [r["dev_accuracy"] for r in runs]
            summary[f"{method} {side}"] = {
                "dev_accuracy_mean": statistics.mean(accuracies),
                "dev_accuracy_std": statistics.stdev(accuracies) if len(runs) > 1 else None,
                "runs": accuracies, "trainable": runs[0]["trainable"],
                **{k: statistics.median(r[k] for r in runs) for k in ("train_examples_per_s", "process_wall_s",
                                                                      "peak_rss_gib")}}
    library = next((r.get("library") for r in rows if r["side"] == "peft"), "?")
    lines = ["# Parameter-efficient methods: tfx_transfer against Hugging Face peft, SST-2-8k", "",
             f"One interleaved run (per seed: each method, peft then ours). peft side: {library}, peft "
             f"Trainer with group_by_length. Command: `python bench/peers_peft.py --seeds={args.seeds}`.", "",
             "| method | side | trainable | dev acc (mean ± std) | runs | train ex/s | process s | peak RSS GiB |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for name, s in summary.items():
        std = "" if s["dev_accuracy_std"] is None else f" ± {100 * s['dev_accuracy_std']:.2f}"
        method, side = name.split(" ")
        lines.append(f"| {method} (lr {METHODS[method][0]:g}) | {side} | {s['trainable']:,} | "
                     f"{100 * s['dev_accuracy_mean']:.2f}%{std} | {', '.join(f'{100 * a:.1f}' for a in s['runs'])} | "
                     f"{s['train_examples_per_s']:.1f} | {s['process_wall_s']:.0f} | {s['peak_rss_gib']:.2f} |")
    write_results(args.results_name, {"rows": rows, "summary": summary}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
