"""Serving raw text: our TF Serving export in float32 and in bfloat16 against Hugging Face transformers + PyTorch eager
(fast tokenizer + model, raw text in) in float32 and under bfloat16 autocast, in one interleaved run (issue 23's
serving goal: batch-1 p50 <= 0.8x Hugging Face's, batch-32 >= 1.2x).

Ours: all-MiniLM-L6-v2 fine-tuned on SST-2-8k (run_classifier.py, full fine-tuning, seed 0), exported twice with
`--do_export --serving_dtype=float32|bfloat16`, called through `serving_default` (tokenisation in the graph). Theirs:
the same packaged MiniLM with a 2-class head (its values do not change the speed), `torch.inference_mode()`, the
tokenizer padding each request to its longest text (max length 128). Every measurement is a fresh process; two rounds
alternate the four systems; medians. Batch 1: 300 requests, the SST-2 dev sentences in file order; batch 32: all 872
in file order. Ready: from before the framework's import to the first answer (import, load, one request; what a
server restart costs before TF Serving's warmup replay or a first user is answered). Our exports' dev accuracy says
what bfloat16 costs.

    python bench/serving_bf16.py --torch_python=<python with torch + transformers>   # results/serving_bf16.{json,md}
    python bench/serving_bf16.py --torch_python=... --results_name=serving_avx2      # results/serving_avx2.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, packaged_model_dir, sst2_labelled, timed_process, write_results  # noqa: E402

REQUESTS, BATCH, SEQ, ROUNDS = 300, 32, 128, 2
SYSTEMS = ("ours float32", "HF float32", "ours bfloat16", "HF bfloat16")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def measure(call, sentences, started):
    """(p50 ms, p99 ms) over REQUESTS batch-1 calls, batch-32 examples/s over every sentence, and the outputs;
    `ready_s`: from `started` (before the framework's import) to the first answer (import, load, one request)."""
    import numpy as np

    call(sentences[:1])
    ready = time.perf_counter() - started
    call(sentences[:BATCH])  # warm up both shapes
    times = []
    for i in range(REQUESTS):
        start = time.perf_counter()
        call(sentences[i % len(sentences):i % len(sentences) + 1])
        times.append(time.perf_counter() - start)
    start, outputs = time.perf_counter(), []
    for i in range(0, len(sentences), BATCH):
        outputs.extend(call(sentences[i:i + BATCH]))
    rate = len(sentences) / (time.perf_counter() - start)
    return {"p50_ms": 1000 * float(np.percentile(times, 50)), "p99_ms": 1000 * float(np.percentile(times, 99)),
            "batch32_examples_per_s": rate, "ready_s": ready}, outputs


def child(system: str, export: str):
    sentences, labels = sst2_labelled("dev")
    started = time.perf_counter()
    if system.startswith("ours"):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the export's ops)

        signature = tf.saved_model.load(export).signatures["serving_default"]
        result, outputs = measure(lambda texts: signature(text=tf.constant(texts))["label_id"].numpy().tolist(),
                                  sentences, started)
        result["dev_accuracy"] = sum(int(p == y) for p, y in zip(outputs, labels)) / len(labels)
    else:
        import contextlib

        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(packaged_model_dir())
        model = AutoModelForSequenceClassification.from_pretrained(packaged_model_dir(), num_labels=2).eval()
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bfloat16" in system else \
            contextlib.nullcontext

        def call(texts):
            with torch.inference_mode(), autocast():
                inputs = tokenizer(texts, padding=True, truncation=True, max_length=SEQ, return_tensors="pt")
                return model(**inputs).logits.float().softmax(-1).argmax(-1).tolist()

        result, _ = measure(call, sentences, started)
        result["library"] = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    print("RESULT " + json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    parser.add_argument("--torch_python", default=sys.executable)
    parser.add_argument("--results_name", default="serving_bf16", help="results/<name>.{json,md}")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.export)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        timed_process([sys.executable, str(REPO / "run_classifier.py"), "--task_name=sst2",
                       f"--data_dir={SHARED_DATA / 'glue_data' / 'SST-2'}", "--max_train_examples=8000", "--do_train",
                       f"--output_dir={run}", "--train_batch_size=32", "--max_seq_length=64", "--num_train_epochs=1",
                       "--seed=0", "--save_checkpoints_steps=100000"], env=ENV)
        exports = {}
        for dtype in ("float32", "bfloat16"):
            timed_process([sys.executable, str(REPO / "run_classifier.py"), "--task_name=sst2", "--do_export",
                           f"--init_checkpoint={run}/final", f"--output_dir={tmp}/export_{dtype}",
                           f"--export_dir={tmp}/{dtype}", f"--max_seq_length={SEQ}", f"--serving_dtype={dtype}"],
                          env=ENV)
            exports[dtype] = f"{tmp}/{dtype}/1"
        rounds = {system: [] for system in SYSTEMS}
        for _ in range(ROUNDS):
            for system in SYSTEMS:
                python = args.torch_python if system.startswith("HF") else sys.executable
                stdout, _, rss = timed_process([python, __file__, f"--child={system}",
                                                f"--export={exports[system.split()[1]]}"], env=ENV)
                result = json.loads([x for x in stdout.splitlines() if x.startswith("RESULT ")][0][7:])
                rounds[system].append(dict(result, peak_rss_gib=rss))
                print(system, result, flush=True)
    summary = {system: {key: statistics.median(r[key] for r in runs) for key in runs[0]
                        if isinstance(runs[0][key], float)} for system, runs in rounds.items()}
    hf32, hf16 = summary["HF float32"], summary["HF bfloat16"]
    lines = ["# Serving raw text: our export in float32 and bfloat16 against Hugging Face + PyTorch eager", "",
             f"SST-2 dev sentences; batch 1: {REQUESTS} requests, p50/p99; batch 32: all 872; fresh process per "
             f"measurement, {ROUNDS} interleaved rounds, medians. Ours: all-MiniLM-L6-v2 fine-tuned on SST-2-8k, "
             f"`serving_default` (raw text in); HF: {rounds['HF float32'][0].get('library')}, fast tokenizer + "
             "model, inference_mode (bfloat16: torch.autocast). Command: `python bench/serving_bf16.py"
             f"{'' if args.results_name == 'serving_bf16' else ' --results_name=' + args.results_name}`.", "",
             "| system | p50 batch 1 ms | p99 batch 1 ms | batch 32 ex/s | p50 / HF fp32 | batch 32 / HF fp32 | "
             "batch 32 / HF same dtype | ready s | dev acc |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for system, s in summary.items():
        same = hf16 if "bfloat16" in system else hf32
        accuracy = f"{100 * s['dev_accuracy']:.2f}%" if "dev_accuracy" in s else "(random head)"
        rate = s["batch32_examples_per_s"]
        lines.append(f"| {system} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {rate:.1f} | "
                     f"{s['p50_ms'] / hf32['p50_ms']:.2f}x | {rate / hf32['batch32_examples_per_s']:.2f}x | "
                     f"{rate / same['batch32_examples_per_s']:.2f}x | {s['ready_s']:.1f} | {accuracy} |")
    write_results(args.results_name, {"rounds": rounds, "summary": summary}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
