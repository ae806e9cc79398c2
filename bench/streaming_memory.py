"""Peak memory of training on data larger than memory (issue 24): run_pretraining.py streaming a 100 MB and a 1 GB
corpus (equal within 10%: memory does not grow with the corpus), and run_classifier.py on a 5,000,000-row training
file (under 3 GB).

    python bench/streaming_memory.py [--parts=pretraining,classifier] [--work_dir=/tmp/streaming_memory]

The corpora are real text repeated to size: SQuAD v1.1 dev contexts (split into sentences, a document per
paragraph) and QNLI dev sentences (documents of 8) from ../shared/data; the classifier file is SST-2's training
sentences with their labels, repeated to 5,000,000 rows. Each run is its own process; its peak RSS is the
kernel's ru_maxrss of that process. run_pretraining.py counts the whole corpus (one streamed pass through reading,
tokenisation and packing) and then trains a few dozen steps of the packaged MiniLM.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys

from common import REPO, RESULTS, SHARED_DATA, packaged_model_dir, shown_command, timed_process, write_results

SIZES_MB = (100, 1024)
STEPS = 32
BATCH = 32


def real_text_documents():
    """Documents (lists of sentences) of real text from ../shared/data."""
    squad = SHARED_DATA / "squad" / "dev-v1.1.json"
    qnli = SHARED_DATA / "glue_data" / "QNLI" / "dev.tsv"
    if not squad.is_file() or not qnli.is_file():
        raise SystemExit(f"{squad} / {qnli} not found: set TFX_SHARED_DATA to ../shared/data.")
    documents = [[s for s in re.split(r"(?<=[.!?])\s+", p["context"]) if s]
                 for article in json.loads(squad.read_text(encoding="utf-8"))["data"] for p in article["paragraphs"]]
    with open(qnli, encoding="utf-8") as f:
        sentences = [row[2] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    documents += [sentences[i:i + 8] for i in range(0, len(sentences), 8)]
    return documents


def write_corpus(path, megabytes: int):
    """The documents repeated until the file has `megabytes` MB (cut at a document boundary)."""
    text = ("\n\n".join("\n".join(d) for d in real_text_documents()) + "\n\n").encode("utf-8")
    target = megabytes << 20
    if not (os.path.isfile(path) and os.path.getsize(path) >= target - len(text)):
        with open(path, "wb") as f:
            for _ in range(max(1, target // len(text))):
                f.write(text)
    return os.path.getsize(path)


def write_classifier_rows(directory, rows: int):
    """SST-2's training rows repeated to `rows` rows (train.tsv), its dev file as dev.tsv."""
    os.makedirs(directory, exist_ok=True)
    source = SHARED_DATA / "glue_data" / "SST-2"
    lines = (source / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    path = os.path.join(directory, "train.tsv")
    if not os.path.isfile(path) or sum(1 for _ in open(path, "rb")) != rows + 1:
        with open(path, "w", encoding="utf-8") as f:
            f.write(header + "\n")
            for i in range(rows):
                f.write(body[i % len(body)] + "\n")
    (open(os.path.join(directory, "dev.tsv"), "w", encoding="utf-8")
     .write((source / "dev.tsv").read_text(encoding="utf-8")))
    return path


def pretraining_rows(work):
    model = packaged_model_dir()
    rows = []
    for megabytes in SIZES_MB:
        corpus = os.path.join(work, f"corpus_{megabytes}mb.txt")
        size = write_corpus(corpus, megabytes)
        out = os.path.join(work, f"pretraining_{megabytes}mb")
        if os.path.isdir(out):
            import shutil
            shutil.rmtree(out)
        # ~2.6k sequences of 128 tokens per 1 MB of this text: epochs for about STEPS steps after the counting pass
        epochs = STEPS * BATCH / (2600 * megabytes)
        command = [sys.executable, str(REPO / "run_pretraining.py"), f"--pretrained={model}", f"--output_dir={out}",
                   "--do_train", f"--input_file={corpus}", "--streaming=on", "--max_seq_length=128",
                   f"--train_batch_size={BATCH}", f"--num_train_epochs={epochs:.6f}", "--save_checkpoints_steps=100000"]
        _, wall, rss = timed_process(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        card = json.loads(open(os.path.join(out, "final", "model_card.json"), encoding="utf-8").read())
        rows.append({"run": f"run_pretraining.py, streamed corpus of {size / 2**20:.0f} MB",
                     "bytes": size, "steps": card["training"]["steps"], "wall_s": wall, "peak_rss_gib": rss,
                     "command": shown_command(["python", *command[1:]]).replace(work, "$WORK")})
        print(rows[-1], flush=True)
    return rows


CLASSIFIER_ROWS = 5_000_000


def classifier_rows(work):
    """run_classifier.py on SST-2 rows repeated to 5M (265 MB: --streaming=auto streams it), about STEPS steps."""
    data = os.path.join(work, "sst2_5m")
    write_classifier_rows(data, CLASSIFIER_ROWS)
    out = os.path.join(work, "classifier_5m")
    if os.path.isdir(out):
        import shutil
        shutil.rmtree(out)
    command = [sys.executable, str(REPO / "run_classifier.py"), "--task_name=SST-2", f"--data_dir={data}",
               f"--pretrained={packaged_model_dir()}", f"--output_dir={out}", "--do_train", "--max_seq_length=64",
               f"--train_batch_size={BATCH}", f"--num_train_epochs={STEPS * BATCH / CLASSIFIER_ROWS:.7f}",
               "--save_checkpoints_steps=100000"]
    _, wall, rss = timed_process(command, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    card = json.loads(open(os.path.join(out, "final", "model_card.json"), encoding="utf-8").read())
    row = {"run": f"run_classifier.py, {CLASSIFIER_ROWS:,}-row training file (streamed: --streaming=auto)",
           "bytes": os.path.getsize(os.path.join(data, "train.tsv")), "steps": card["training"]["steps"],
           "wall_s": wall, "peak_rss_gib": rss, "command": shown_command(["python", *command[1:]]).replace(work, "$WORK")}
    print(row, flush=True)
    return [row]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="pretraining,classifier")
    parser.add_argument("--work_dir", default="/tmp/streaming_memory")
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    previous = RESULTS / "streaming_memory.json"  # rows of the parts not run this time are kept
    kept = json.loads(previous.read_text(encoding="utf-8"))["rows"] if previous.is_file() else []
    rows = []
    for part, measure in (("pretraining", pretraining_rows), ("classifier", classifier_rows)):
        script = f"run_{part}.py"
        rows += measure(args.work_dir) if part in args.parts else [r for r in kept if r["run"].startswith(script)]
    lines = ["| run | steps | wall s | peak RSS GiB |", "|---|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['steps']} | {r['wall_s']:.0f} | {r['peak_rss_gib']:.2f} |" for r in rows]
    pre = [r for r in rows if r["run"].startswith("run_pretraining")]
    if len(pre) == 2:
        lines.append(f"\n1 GB / 100 MB peak RSS: {pre[1]['peak_rss_gib'] / pre[0]['peak_rss_gib']:.3f}")
    lines += ["", "Commands ($WORK: the work directory):"] + [f"- `{r['command']}`" for r in rows]
    write_results("streaming_memory", {"rows": rows}, lines)


if __name__ == "__main__":
    main()
