"""run_squad.py on the packaged MiniLM: train on the first 11 SQuAD v1.1 train articles, evaluate on the full dev
set (and on its first 1,000 questions, the reference slice of ../shared/DESIGN.md's HF measurement).

    python bench/squad.py                              # full, full_lr1e-4, adapters: results/squad.{json,md}; ~80 min
    python bench/squad.py --setups=adapters            # rerun one setup; the other rows are kept from squad.json

Settings: 1 epoch, max_seq_length 384, doc_stride 128, train batch 16, predict batch 8 (google-research/bert's
default), seed 0, length-bucketed batches. Setups: `full` = lr 5e-5 with the reference's own (Hugging Face Trainer)
optimisation conventions; `full_google` = lr 5e-5 with google-research/bert's (warmup 10%, decay from step 0, weight
decay 0.01, Keras epsilon 1e-6); `full_lr1e-4` = lr 1e-4 with run_squad.py's defaults (google-research/bert's
conventions), the learning rate full fine-tuning of this small model needs at this budget (results/squad_diagnosis.md);
`adapters` = Houlsby size 64, lr 1e-3, google-research/bert's conventions. Each run is the real command line in its
own process; peak RSS from /usr/bin/time; each row records its own date, since a partial rerun keeps the other rows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, RESULTS, SHARED_DATA, shown_command, utc_timestamp, write_results  # noqa: E402

TRAIN = SHARED_DATA / "squad" / "train-v1.1.first11articles.json"
DEV = SHARED_DATA / "squad" / "dev-v1.1.json"
HF_CONVENTIONS = ["--lr_schedule=linear_after_warmup", "--warmup_proportion=0", "--weight_decay=0", "--adam_epsilon=1e-8",
                  "--adam_epsilon_mode=pytorch"]
SETUPS = {"full": ["--adaptation=full", "--learning_rate=5e-5", *HF_CONVENTIONS],
          "full_google": ["--adaptation=full", "--learning_rate=5e-5"],
          "full_lr1e-4": ["--adaptation=full", "--learning_rate=1e-4"],
          "adapters": ["--adaptation=adapters", "--adapter_size=64", "--learning_rate=1e-3"]}
# HF transformers + PyTorch on this machine, same model and budget (DESIGN / issue 6).
REFERENCE = {"em_first_1000": 34.0, "f1_first_1000": 43.6, "train_features_per_s": 2.5, "predict_features_per_s": 15.0,
             "peak_rss_gib": 5.3}


def first_questions(dataset, n):
    """The dataset's first n questions in file order, as a dataset."""
    out, left = [], n
    for article in dataset:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            qas = paragraph["qas"][:left]
            left -= len(qas)
            paragraphs.append(dict(paragraph, qas=qas))
        if paragraphs:
            out.append(dict(article, paragraphs=paragraphs))
        if left <= 0:
            break
    return out


def run(setup, output_dir):
    command = ["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, os.path.join(REPO, "run_squad.py"),
               f"--train_file={TRAIN}", f"--predict_file={DEV}", f"--output_dir={output_dir}", "--do_train",
               "--do_predict", "--eval", "--max_seq_length=384", "--doc_stride=128", "--train_batch_size=16",
               "--predict_batch_size=8", "--num_train_epochs=1", "--seed=0", *SETUPS[setup]]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if result.returncode:
        raise SystemExit(f"{setup} failed:\n{result.stderr[-3000:]}")
    log = result.stderr
    feature_times = re.findall(r"(\d+) questions -> (\d+) features in ([\d.]+) s", log)
    train_speed = re.findall(r"Trained to step \d+; ([\d.]+) features/s", log)
    predict_speed = re.findall(r"Predicted (\d+) features in ([\d.]+) s \(([\d.]+) features/s\)", log)
    rss = re.findall(r"MAXRSS (\d+)", log)
    with open(os.path.join(output_dir, "eval_results.json"), encoding="utf-8") as f:
        full = json.load(f)
    with open(os.path.join(output_dir, "predictions.json"), encoding="utf-8") as f:
        predictions = json.load(f)
    from tfx_transfer.metrics.squad import evaluate

    with open(DEV, encoding="utf-8") as f:
        dev = json.load(f)["data"]
    subset = first_questions(dev, 1000)
    ids = {qa["id"] for a in subset for p in a["paragraphs"] for qa in p["qas"]}
    first = evaluate(subset, {q: t for q, t in predictions.items() if q in ids})
    return {"setup": setup, "em": full["exact_match"], "f1": full["f1"], "em_first_1000": first["exact_match"],
            "f1_first_1000": first["f1"],
            "feature_building": [{"questions": int(q), "features": int(n), "seconds": float(s)}
                                 for q, n, s in feature_times],
            "train_features_per_s": float(train_speed[-1]) if train_speed else None,
            "predict_features_per_s": float(predict_speed[-1][2]) if predict_speed else None,
            "peak_rss_gib": int(rss[-1]) / 2 ** 20 if rss else None,
            "command": shown_command(command[4:]).replace(str(output_dir), "<out>"),
            "date": utc_timestamp()}


def merged(previous, new):
    """Rows of `new` replace the rows of the same setup in `previous`; the rest stay, in SETUPS order."""
    rows = {r["setup"]: r for r in previous}
    rows.update({r["setup"]: r for r in new})
    return [rows[s] for s in SETUPS if s in rows]


def main():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--setups", default=",".join(s for s in SETUPS if s != "full_google"),
                        help=f"comma-separated, from {', '.join(SETUPS)}")
    setups = parser.parse_args().setups.split(",")
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise SystemExit(f"unknown setups {unknown}; choose from {list(SETUPS)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for setup in setups:
            r = run(setup, os.path.join(tmp, setup))
            results.append(r)
            print(json.dumps(r), flush=True)
    previous = RESULTS / "squad.json"
    if previous.exists():
        results = merged(json.loads(previous.read_text(encoding="utf-8"))["results"], results)
    lines = ["# SQuAD v1.1: run_squad.py with the packaged all-MiniLM-L6-v2", "",
             f"Train: `{TRAIN.name}` (3,807 questions, 1 epoch); predict + official metrics: the full `{DEV.name}` "
             "(10,570 questions) and its first 1,000 questions. max_seq_length 384, doc_stride 128, batch 16 (predict 8), "
             "seed 0; setups as in bench/squad.py's docstring (`full`: the reference's optimisation conventions). "
             "Command: `python bench/squad.py`.", "",
             "| setup | EM / F1 (full dev) | EM / F1 (first 1,000) | train features/s | predict features/s | "
             "features: train / dev (s) | peak RSS GiB | measured |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        times = " / ".join(f"{b['seconds']:.1f}" for b in r["feature_building"])
        lines.append(f"| {r['setup']} | {r['em']:.2f} / {r['f1']:.2f} | {r['em_first_1000']:.2f} / "
                     f"{r['f1_first_1000']:.2f} | {r['train_features_per_s']:.2f} | {r['predict_features_per_s']:.1f} | "
                     f"{times} | {r['peak_rss_gib']:.2f} | {r['date'][:10]} |")
    ref = REFERENCE
    lines.append(f"| HF transformers + PyTorch (DESIGN reference, fixed 384) | | {ref['em_first_1000']} / "
                 f"{ref['f1_first_1000']} | {ref['train_features_per_s']} | {ref['predict_features_per_s']} | | "
                 f"{ref['peak_rss_gib']} | |")
    write_results("squad", {"results": results, "reference": REFERENCE}, lines)


if __name__ == "__main__":
    main()
