"""--probe_layers (Tenney et al. 2019): a linear probe per layer of the frozen packaged MiniLM, embeddings included,
on UD English-EWT UPOS (run_ner.py) and SST-2-8k (run_classifier.py), each the whole script as a user runs it.

- UD: train on en_ewt-ud-test.conllu (the train file is not available here), score on en_ewt-ud-dev.conllu; 3 epochs,
  batch 32, seq 128 (the UD protocol of bench/ud_tagging.py); token probes read each word's first sub-token.
- SST-2-8k: the first 8,000 rows of train.tsv, all 872 dev rows; batch 32, seq 64 (the design document's protocol),
  3 epochs; sentence probes read the mean of the real tokens' vectors.
Probes: lr 1e-2 (a linear layer on LayerNorm-scale features; the fine-tuning rates barely move it in this budget),
10% warmup then linear decay, AdamW wd 0.01, no clipping (it would couple the probes), seed 0.

    python bench/probing.py [--tasks=ud,sst2]             # results/probing.{json,md}
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, timed_process, write_results  # noqa: E402

UD = SHARED_DATA / "ud_english_ewt"
PROBES = ["--adaptation=feature_extraction", "--probe_layers=all", "--learning_rate=1e-2", "--do_train", "--do_eval",
          "--num_train_epochs=3", "--train_batch_size=32", "--eval_batch_size=32", "--seed=0",
          "--save_checkpoints_steps=100000"]
TASKS = {
    "ud": ("run_ner.py", "UD English-EWT UPOS, dev token accuracy",
           [f"--train_file={UD / 'en_ewt-ud-test.conllu'}", f"--dev_file={UD / 'en_ewt-ud-dev.conllu'}",
            "--label_column=upos", "--max_seq_length=128"]),
    "sst2": ("run_classifier.py", "SST-2-8k, dev accuracy",
             ["--task_name=SST-2", f"--data_dir={SHARED_DATA / 'glue_data' / 'SST-2'}", "--max_train_examples=8000",
              "--max_seq_length=64"]),
}


def run_task(name, scratch):
    script, title, arguments = TASKS[name]
    out = os.path.join(scratch, name)
    command = [sys.executable, str(REPO / script), f"--output_dir={out}", *arguments, *PROBES]
    _, wall, rss = timed_process(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = open(os.path.join(out, "probe_results.tsv"), encoding="utf-8").read().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    return {"task": name, "title": title, "process_wall_s": wall, "peak_rss_gib": rss,
            "command": shown_command(["python", *command[1:]]).replace(scratch, "<scratch>"),
            "layers": [{"layer": int(r["layer"]), "name": r["name"], "accuracy": float(r["eval_accuracy"]),
                        "loss": float(r["eval_loss"])} for r in rows]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="ud,sst2")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.tasks.split(","):
            results.append(run_task(name, scratch))
            print(results[-1], flush=True)
    layers = [entry["name"] for entry in results[0]["layers"]]
    lines = ["# Linear probes per layer of the frozen packaged MiniLM (--probe_layers=all)", "",
             "Dev accuracy of each layer's probe (embeddings = the embedding LayerNorm's output, layer_n = the n-th "
             "transformer layer's), all layers' probes trained together in one run; see bench/probing.py for the "
             "protocol.", "",
             "| task | " + " | ".join(layers) + " | best | process s | peak RSS GiB |",
             "|---|" + "---:|" * (len(layers) + 3)]
    for r in results:
        best = max(r["layers"], key=lambda x: x["accuracy"])
        lines.append(f"| {r['title']} | " + " | ".join(f"{100 * x['accuracy']:.2f}%" for x in r["layers"])
                     + f" | {best['name']} | {r['process_wall_s']:.0f} | {r['peak_rss_gib']:.2f} |")
    lines += ["", "Commands:"] + [f"- `{r['command']}`" for r in results]
    write_results("probing", {"tasks": results}, lines)


if __name__ == "__main__":
    main()
