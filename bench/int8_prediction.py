"""Prediction in int8 against float32, ours and Hugging Face + PyTorch's, on the same trained weights (issue 23).

One SST-2-8k model is trained with run_classifier.py (the peers protocol: MiniLM, 8,000 rows, 1 epoch, seed 0; or
--model_dir=<a run's final/>) and handed to both stacks: ours loads final/model.keras, transformers loads it
written as a BertModel checkpoint (`save_hf_checkpoint`) into BertForSequenceClassification with our head's
weights. Four systems, each in a fresh process, rounds interleaved:

  ours float32        trainer.predict from token ids after tokenising the raw text (what --do_eval runs)
  ours int8           the same with int8=True (run_classifier --inference_dtype=int8)
  HF float32          fast tokenizer, sentences sorted by length, batches of 32 padded to their longest row,
                      BertForSequenceClassification under torch.inference_mode (a plain loop: the Trainer's own
                      predict adds overhead, so this is the stronger peer)
  HF int8             the same after torch.ao.quantization.quantize_dynamic(nn.Linear -> qint8): PyTorch's
                      dynamic quantisation (fbgemm / oneDNN), what its users run for CPU int8

Timed from raw text: the 872 dev sentences cold (the process's first prediction: trace and set-up included) and
warm (again), and the 8,000 SST-2 training sentences after the 8,000 the model trained on (rows 8,000-15,999) warm.
Dev accuracy for each.

    python bench/int8_prediction.py --torch_python=<python with torch> [--rounds=2] [--model_dir=.../final]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (INT8_SYSTEMS, REPO, int8_systems_round, load_in_transformers,  # noqa: E402
                    matmul_gflops, median_rows, sst2_labelled, timed_process, write_for_transformers, write_results)

BATCH, SEQ, TRAIN_ROWS, SEED = 32, 64, 8000, 0


def _sets():
    dev, labels = sst2_labelled("dev")
    train, _ = sst2_labelled("train", 2 * TRAIN_ROWS)
    return dev, labels, train[TRAIN_ROWS:]


def _timed(predict, texts):
    start = time.perf_counter()
    logits = predict(texts)
    return logits, time.perf_counter() - start


def _measure(predict):
    dev, labels, unseen = _sets()
    logits, cold = _timed(predict, dev)
    _, warm = _timed(predict, dev)
    _, unseen_s = _timed(predict, unseen)
    accuracy = sum(int(p == y) for p, y in zip(logits.argmax(-1), labels)) / len(labels)
    return {"dev_cold_examples_per_s": len(dev) / cold, "dev_warm_examples_per_s": len(dev) / warm,
            "unseen_examples_per_s": len(unseen) / unseen_s, "dev_accuracy": accuracy, "dev_cold_s": cold}


def child_ours(model_dir: str, int8: bool) -> dict:
    import tfx_transfer  # noqa: F401  (first: it asks for oneDNN, whose int8 kernels int8 prediction needs)

    import keras

    from tfx_transfer.data.examples import InputExample
    from tfx_transfer.data.pipeline import encode_examples
    from tfx_transfer.jobs import trainer
    from tfx_transfer.text.tokenizer import BertTokenizer

    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    tokenizer = BertTokenizer.from_pretrained(model_dir)

    def predict(texts):
        split = encode_examples([InputExample(str(i), t) for i, t in enumerate(texts)], tokenizer, SEQ)
        return trainer.predict(model, split, batch_size=BATCH, max_seq_length=SEQ, int8=int8)

    return _measure(predict)


def child_hf(hf_dir: str, int8: bool) -> dict:
    import numpy as np
    import torch
    import transformers

    model = load_in_transformers(transformers.BertForSequenceClassification, hf_dir, "classifier", int8, num_labels=2)
    tokenizer = transformers.BertTokenizerFast(os.path.join(hf_dir, "vocab.txt"), do_lower_case=True)

    def predict(texts):
        encoded = tokenizer(texts, truncation=True, max_length=SEQ)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        logits = np.zeros((len(texts), 2), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                rows = order[start:start + BATCH]
                width = max(len(encoded[i]) for i in rows)
                ids = torch.tensor([encoded[i] + [0] * (width - len(encoded[i])) for i in rows])
                logits[rows] = model(input_ids=ids, attention_mask=(ids > 0).long()).logits.numpy()
        return logits

    result = _measure(predict)
    result["library"] = f"transformers {transformers.__version__}, torch {torch.__version__}, " \
                        f"{torch.get_num_threads()} threads, quantized engine {torch.backends.quantized.engine}"
    return result


def prepare(model_dir: str, hf_dir: str):
    """Writes our trained model as a BertModel checkpoint + head.npz for transformers."""
    write_for_transformers(model_dir, hf_dir, "classifier")


def train(out: str) -> str:
    from common import SHARED_DATA

    timed_process([sys.executable, str(REPO / "run_classifier.py"), "--task_name=sst2",
                   f"--data_dir={SHARED_DATA / 'glue_data' / 'SST-2'}", f"--max_train_examples={TRAIN_ROWS}",
                   "--do_train", f"--output_dir={out}", f"--train_batch_size={BATCH}", f"--max_seq_length={SEQ}",
                   "--learning_rate=5e-5", "--num_train_epochs=1", f"--seed={SEED}", "--warmup_proportion=0.1",
                   "--weight_decay=0.01", "--save_checkpoints_steps=100000"],
                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return os.path.join(out, "final")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["ours", "hf", "prepare"])
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--model_dir", help="A run_classifier final/ to use (default: train one, SST-2-8k).")
    parser.add_argument("--hf_dir", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--torch_python", default=sys.executable)
    parser.add_argument("--results_name", default="int8_prediction")
    args = parser.parse_args()
    if args.child == "prepare":
        return prepare(args.model_dir, args.hf_dir)
    if args.child:
        result = child_ours(args.model_dir, args.int8) if args.child == "ours" else child_hf(args.hf_dir, args.int8)
        print("RESULT " + json.dumps(result), flush=True)
        return
    peak = matmul_gflops()
    print(f"fp32 matmul: {peak:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or train(os.path.join(tmp, "run"))
        hf_dir = os.path.join(tmp, "hf")
        timed_process([sys.executable, __file__, "--child=prepare", f"--model_dir={model_dir}", f"--hf_dir={hf_dir}"],
                      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        rounds = []
        for index in range(args.rounds):
            def describe(name, r):
                print(f"[{index + 1}] {name:13s} dev cold {r['dev_cold_examples_per_s']:.0f} ex/s, warm "
                      f"{r['dev_warm_examples_per_s']:.0f}, unseen 8k {r['unseen_examples_per_s']:.0f}, acc "
                      f"{100 * r['dev_accuracy']:.2f}%, process {r['process_wall_s']:.0f} s", flush=True)

            rounds.append(int8_systems_round(__file__, args.torch_python,
                                             [f"--model_dir={model_dir}", f"--hf_dir={hf_dir}"], describe))
    rows = median_rows(rounds)
    write_results(args.results_name, {"matmul_gflops": peak, "rows": rows, "trained_here": not args.model_dir},
                  table(peak, rows, args))


def table(peak, rows, args):
    command = shlex.join(["python", "bench/int8_prediction.py",
                          *(a for a in sys.argv[1:] if not a.startswith(("--torch_python", "--model_dir")))])
    lines = ["# Prediction in int8 and float32: ours and Hugging Face + PyTorch's, same weights, same run", "",
             f"Command: `{command}`; fp32 matmul {peak:.0f} GFLOP/s; medians of {args.rounds} interleaved rounds, "
             "each system a fresh process. One SST-2-8k model (MiniLM) for all four rows; raw text in, batches of "
             "32 sorted by length and padded to their longest row.", "",
             "| system | dev 872, first call ex/s | dev 872, warm ex/s | 8,000 unseen sentences ex/s | dev acc | "
             "process s |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['dev_cold_examples_per_s']:.0f} | {r['dev_warm_examples_per_s']:.0f} | "
                     f"{r['unseen_examples_per_s']:.0f} | {100 * r['dev_accuracy']:.2f}% | "
                     f"{r['process_wall_s']:.0f} |")
    ours, ours8, hf, hf8 = (rows[name] for name in INT8_SYSTEMS)

    def ratio(a, b, key):
        return f"{a[key] / b[key]:.2f}x"

    def points(a, b):
        return f"{100 * (a['dev_accuracy'] - b['dev_accuracy']):+.2f} points"

    cold, warm, unseen = "dev_cold_examples_per_s", "dev_warm_examples_per_s", "unseen_examples_per_s"
    lines += ["", f"- ours int8 / HF float32: first call {ratio(ours8, hf, cold)}, warm {ratio(ours8, hf, warm)}, "
              f"8k {ratio(ours8, hf, unseen)} (goal >= 1.2x)",
              f"- ours int8 / HF int8: first call {ratio(ours8, hf8, cold)}, 8k {ratio(ours8, hf8, unseen)}",
              f"- int8 - float32 dev accuracy: ours {points(ours8, ours)}, HF {points(hf8, hf)}",
              f"- HF: {hf.get('library', '')}"]
    return lines


if __name__ == "__main__":
    main()
