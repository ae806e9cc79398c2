"""SQuAD prediction at max_seq_length 384 in int8 and float32, ours and Hugging Face + PyTorch's, on the same trained
weights (issue 23: int8 where the projections dominate).

One SQuAD model is trained with run_squad.py (bench/squad.py's `full_lr1e-4` setup: MiniLM, the first 11 train
articles, 1 epoch, seed 0; or --model_dir=<a run_squad final/>) and handed to both stacks: ours loads
final/model.keras, transformers loads it written as a BertModel checkpoint (`save_hf_checkpoint`) into
BertForQuestionAnswering with our span head's weights. The first 1,000 dev-v1.1 questions (the reference slice of
bench/squad.py) are cut into features once, by our google-research/bert feature builder (seq 384, stride 128,
query 64); every system predicts start/end logits for the same token ids, and the same post-processing and official
metric score them, so the rows differ only in the model's arithmetic. Four systems, each in a fresh process, rounds
interleaved:

  ours float32   trainer.predict (what run_squad.py --do_predict runs: length-sorted batches of 8, each padded to
                 its longest feature)
  ours int8      the same with int8=True (run_squad.py --inference_dtype=int8)
  HF float32     BertForQuestionAnswering under torch.inference_mode, the same sorted batches of 8 padded to their
                 longest feature (a plain loop; HF's run_qa.py pads every feature to 384, a weaker peer)
  HF int8        the same after torch.ao.quantization.quantize_dynamic(nn.Linear -> qint8)

Timed: the features' first prediction in the process (trace and set-up included) and again (warm).

    python bench/int8_squad.py --torch_python=<python with torch> [--rounds=2] [--model_dir=.../final]
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

from common import (INT8_SYSTEMS, REPO, SHARED_DATA, int8_systems_round, load_in_transformers,  # noqa: E402
                    matmul_gflops, median_rows, timed_process, write_for_transformers, write_results)

QUESTIONS, SEQ, STRIDE, QUERY, BATCH, SEED = 1000, 384, 128, 64, 8, 0
DEV = SHARED_DATA / "squad" / "dev-v1.1.json"


def _load_features(work: str):
    import numpy as np

    with np.load(os.path.join(work, "features.npz")) as f:
        return {key: f[key] for key in f.files}


def _measure(predict, work: str, name: str) -> dict:
    """Predicts the features twice (first call, warm) and keeps the first call's logits for the parent to score."""
    import numpy as np

    features = _load_features(work)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        logits = predict(features)
        timings.append(time.perf_counter() - start)
    np.savez(os.path.join(work, f"logits {name}.npz"), **logits)
    n = len(features["lengths"])
    return {"features": n, "cold_features_per_s": n / timings[0], "warm_features_per_s": n / timings[1],
            "cold_s": timings[0]}


def child_ours(model_dir: str, work: str, int8: bool) -> dict:
    import tfx_transfer  # noqa: F401  (first: it asks for oneDNN, whose int8 kernels int8 prediction needs)

    import keras

    from tfx_transfer.data.pipeline import EncodedSplit
    from tfx_transfer.jobs import trainer

    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))

    def predict(features):
        split = EncodedSplit(features["word_ids"], features["type_ids"], features["lengths"], None,
                             [str(i) for i in range(len(features["lengths"]))])
        return trainer.predict(model, split, batch_size=BATCH, max_seq_length=SEQ, per_token=True, int8=int8)

    return _measure(predict, work, "ours int8" if int8 else "ours float32")


def child_hf(hf_dir: str, work: str, int8: bool) -> dict:
    import numpy as np
    import torch
    import transformers

    model = load_in_transformers(transformers.BertForQuestionAnswering, hf_dir, "qa_outputs", int8)

    def predict(features):
        lengths = features["lengths"]
        order = np.argsort(lengths, kind="stable")
        start_logits = np.zeros(features["word_ids"].shape, np.float32)
        end_logits = np.zeros_like(start_logits)
        with torch.inference_mode():
            for first in range(0, len(order), BATCH):
                rows = order[first:first + BATCH]
                width = int(lengths[rows].max())
                ids = torch.from_numpy(features["word_ids"][rows, :width].astype(np.int64))
                types = torch.from_numpy(features["type_ids"][rows, :width].astype(np.int64))
                mask = (torch.arange(width)[None, :] < torch.from_numpy(lengths[rows].astype(np.int64))[:, None])
                out = model(input_ids=ids, token_type_ids=types, attention_mask=mask.long())
                start_logits[rows, :width] = out.start_logits.numpy()
                end_logits[rows, :width] = out.end_logits.numpy()
        return {"start_logits": start_logits, "end_logits": end_logits}

    result = _measure(predict, work, "HF int8" if int8 else "HF float32")
    result["library"] = f"transformers {transformers.__version__}, torch {torch.__version__}, " \
                        f"{torch.get_num_threads()} threads, quantized engine {torch.backends.quantized.engine}"
    return result


def prepare(model_dir: str, work: str, questions: int):
    """Writes the features (features.npz), our trained model as a BertModel checkpoint + head.npz for transformers
    (hf/), and the kept examples and features for scoring (pickled, read back by `score`)."""
    import pickle

    import numpy as np

    from squad import first_questions
    from tfx_transfer.data.squad import build_features, features_to_split, read_squad
    from tfx_transfer.text.tokenizer import BertTokenizer

    with open(DEV, encoding="utf-8") as f:
        subset = {"version": "1.1", "data": first_questions(json.load(f)["data"], questions)}
    path = os.path.join(work, "dev_first.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(subset, f)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    examples, dataset = read_squad(path, False, False)
    features = build_features(examples, tokenizer, SEQ, STRIDE, QUERY, False)
    split = features_to_split(features, SEQ)
    np.savez(os.path.join(work, "features.npz"), word_ids=split.word_ids, type_ids=split.type_ids,
             lengths=split.lengths)
    with open(os.path.join(work, "scoring.pkl"), "wb") as f:
        pickle.dump((examples, dataset, features), f)
    write_for_transformers(model_dir, os.path.join(work, "hf"), "span_logits")


def score(model_dir: str, work: str) -> dict:
    """{system: {"exact_match", "f1"}} of every system's saved logits, through the same post-processing."""
    import pickle

    import numpy as np

    from tfx_transfer.data.squad import postprocess
    from tfx_transfer.metrics.squad import evaluate
    from tfx_transfer.text.tokenizer import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(model_dir)
    with open(os.path.join(work, "scoring.pkl"), "rb") as f:
        examples, dataset, features = pickle.load(f)
    scores = {}
    for name in INT8_SYSTEMS:
        with np.load(os.path.join(work, f"logits {name}.npz")) as logits:
            predictions, _, _ = postprocess(examples, features, logits["start_logits"], logits["end_logits"],
                                            tokenizer.vocab, tokenizer.do_lower_case, 20, 30, False, 0.0)
        scores[name] = evaluate(dataset, predictions)
    return scores


def train(out: str) -> str:
    from squad import SETUPS, TRAIN

    timed_process([sys.executable, str(REPO / "run_squad.py"), f"--train_file={TRAIN}", f"--output_dir={out}",
                   "--do_train", f"--max_seq_length={SEQ}", f"--doc_stride={STRIDE}", "--train_batch_size=16",
                   "--num_train_epochs=1", f"--seed={SEED}", "--save_checkpoints_steps=100000",
                   *SETUPS["full_lr1e-4"]], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return os.path.join(out, "final")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["ours", "hf", "prepare"])
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--model_dir", help="A run_squad final/ to use (default: train one, bench/squad.py's "
                        "full_lr1e-4 setup, ~15 min).")
    parser.add_argument("--questions", type=int, default=QUESTIONS, help="The first N dev-v1.1 questions.")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--torch_python", default=sys.executable)
    parser.add_argument("--results_name", default="int8_squad")
    args = parser.parse_args()
    if args.child == "prepare":
        return prepare(args.model_dir, args.work, args.questions)
    if args.child:
        result = (child_ours(args.model_dir, args.work, args.int8) if args.child == "ours"
                  else child_hf(os.path.join(args.work, "hf"), args.work, args.int8))
        print("RESULT " + json.dumps(result), flush=True)
        return
    peak = matmul_gflops()
    print(f"fp32 matmul: {peak:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as work:
        model_dir = args.model_dir or train(os.path.join(work, "run"))
        timed_process([sys.executable, __file__, "--child=prepare", f"--model_dir={model_dir}", f"--work={work}",
                       f"--questions={args.questions}"],
                      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        rounds = []
        for index in range(args.rounds):
            def describe(name, r):
                print(f"[{index + 1}] {name:13s} {r['features']} features: first call {r['cold_features_per_s']:.1f} "
                      f"features/s, warm {r['warm_features_per_s']:.1f}, process {r['process_wall_s']:.0f} s",
                      flush=True)

            this = int8_systems_round(__file__, args.torch_python, [f"--model_dir={model_dir}", f"--work={work}"],
                                      describe)
            for name, metrics in score(model_dir, work).items():  # the logits of this round's processes
                this[name].update(exact_match=metrics["exact_match"], f1=metrics["f1"])
                print(f"[{index + 1}] {name:13s} EM {metrics['exact_match']:.2f} F1 {metrics['f1']:.2f}", flush=True)
            rounds.append(this)
    rows = median_rows(rounds)
    write_results(args.results_name, {"matmul_gflops": peak, "rows": rows, "trained_here": not args.model_dir},
                  table(peak, rows, args))


def table(peak, rows, args):
    command = shlex.join(["python", "bench/int8_squad.py",
                          *(a for a in sys.argv[1:] if not a.startswith(("--torch_python", "--model_dir")))])
    n = int(rows["ours float32"]["features"])
    lines = ["# SQuAD prediction (seq 384) in int8 and float32: ours and Hugging Face + PyTorch's, same weights, "
             "same run", "",
             f"Command: `{command}`; fp32 matmul {peak:.0f} GFLOP/s; medians of {args.rounds} interleaved rounds, "
             f"each system a fresh process. One run_squad.py model (MiniLM, bench/squad.py's full_lr1e-4 setup) for "
             f"all four rows; the first {args.questions:,} dev-v1.1 questions as {n:,} features (seq {SEQ}, stride "
             f"{STRIDE}), length-sorted batches of {BATCH} padded to their longest feature; the same post-processing "
             "and official metric for every row.", "",
             "| system | first call features/s | warm features/s | EM | F1 | process s |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['cold_features_per_s']:.1f} | {r['warm_features_per_s']:.1f} | "
                     f"{r['exact_match']:.2f} | {r['f1']:.2f} | {r['process_wall_s']:.0f} |")
    ours, ours8, hf, hf8 = (rows[name] for name in INT8_SYSTEMS)

    def ratio(a, b, key):
        return f"{a[key] / b[key]:.2f}x"

    cold, warm = "cold_features_per_s", "warm_features_per_s"
    lines += ["", f"- ours int8 / HF float32: first call {ratio(ours8, hf, cold)}, warm {ratio(ours8, hf, warm)}",
              f"- ours float32 / HF float32: first call {ratio(ours, hf, cold)}, warm {ratio(ours, hf, warm)}",
              f"- ours int8 / HF int8: first call {ratio(ours8, hf8, cold)}, warm {ratio(ours8, hf8, warm)}",
              f"- int8 - float32 F1: ours {ours8['f1'] - ours['f1']:+.2f}, HF {hf8['f1'] - hf['f1']:+.2f} "
              "(EM: ours {:+.2f}, HF {:+.2f})".format(ours8['exact_match'] - ours['exact_match'],
                                                     hf8['exact_match'] - hf['exact_match']),
              f"- HF: {hf.get('library', '')}"]
    return lines


if __name__ == "__main__":
    main()
