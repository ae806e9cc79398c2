"""tfx_transfer against Hugging Face transformers + PyTorch, as users run both, in one interleaved run (issue 23).

Needs the optional extra: `pip install torch==2.13.0` first (pip then takes the CPU wheel), then
`pip install -e .[torch]`; `--torch_python=` runs the Hugging Face side with another interpreter instead.

SST-2-8k (protocol of ../shared/DESIGN.md: all-MiniLM-L6-v2, first 8,000 SST-2 train rows, 1 epoch, batch 32,
max length 64, lr 5e-5, weight decay 0.01 off LayerNorm/bias, 10% warmup + linear decay, clip 1.0, seed 0; accuracy
on the 872 dev rows). Every row is a whole process as a user starts it, timed from spawn to exit by this script:

  HF fixed 64            Trainer, the tokenizer pads every example to 64
  HF dynamic             Trainer + DataCollatorWithPadding (each batch padded to its longest row), random order
  HF group_by_length     the same with train_sampling_strategy="group_by_length" (the peer)
  tfx_transfer ...       python run_classifier.py --task_name=sst2 --max_train_examples=8000 --do_train --do_eval
                         (the int8 row adds --inference_dtype=int8: the same training, dev prediction in int8)

HF's dev prediction is what its users write: tokenise the raw sentences, sort them by length, `trainer.predict`
with dynamic padding (fixed recipe: padded to 64). Ours is run_classifier's --do_eval (raw text in, metrics out).
Train ex/s are over steps 20..end; the first step is timed from the start of training. Rounds alternate the
systems (HF group, ours, HF fixed, ours fixed, HF dynamic), so a drift of the machine hits both stacks.

Encoder at equal shapes: 16 batches of 32 real SST-2 dev sentences padded to 64 and 128, forward only; PyTorch
eager under `torch.inference_mode()` (as users run it) against our BertEncoder in a tf.function and under XLA; best
of three passes, each system in its own process, two interleaved rounds (best kept).

    python bench/peers_torch.py                 # everything, writes results/peers_torch.{json,md,png}
    python bench/peers_torch.py --rounds=2      # two interleaved rounds (medians reported)
    python bench/peers_torch.py --skip_encoder --seeds=0,1,2 --systems="HF group_by_length,tfx_transfer (default)" \
        --results_name=peers_torch_seeds       # accuracy over three seeds, the peer and our default only
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (REPO, SHARED_DATA, bert_forward_flops, child_result, matmul_gflops, median_rows,  # noqa: E402
                    packaged_model_dir, sst2_labelled, timed_process, write_results)

TRAIN_ROWS, BATCH, SEQ, SEED, LR, WARMUP, WEIGHT_DECAY = 8000, 32, 64, 0, 5e-5, 0.1, 0.01
FIRST_MEASURED_STEP = 20
ENCODER_BATCHES = 16

HF_RECIPES = {"HF fixed 64": "fixed", "HF dynamic": "dynamic", "HF group_by_length": "group_by_length"}
OURS = {  # row -> run_classifier.py flags beyond the protocol's
    "tfx_transfer fixed 64": ["--batch_padding=max_length"],
    "tfx_transfer (default)": [],
    "tfx_transfer int8 inference": ["--inference_dtype=int8"],  # the same training; dev prediction in int8
}
OURS_INT8 = "tfx_transfer int8 inference"
PEER = "HF group_by_length"
OURS_DEFAULT = "tfx_transfer (default)"
SYSTEMS = [PEER, OURS_DEFAULT, OURS_INT8, "HF fixed 64", "tfx_transfer fixed 64", "HF dynamic"]  # interleaving order


# ---------------------------------------------------------------------------------------------- shared helpers
def _steady_rate(step_ends):
    measured = step_ends[-1] - step_ends[FIRST_MEASURED_STEP - 1]
    return (len(step_ends) - FIRST_MEASURED_STEP) * BATCH / measured


# ------------------------------------------------------------------------------------------ Hugging Face side
def run_hf(recipe: str, model_dir: str, seed: int = SEED, peft_config=None, learning_rate: float = LR) -> dict:
    """One SST-2-8k run of transformers' Trainer (`recipe` in HF_RECIPES' values); all numbers measured here.
    `peft_config`: a Hugging Face peft config the model is wrapped with (`get_peft_model`) before training."""
    import numpy as np
    import torch
    import transformers
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments)

    transformers.logging.set_verbosity_error()
    texts, labels = sst2_labelled("train", TRAIN_ROWS)
    dev_texts, dev_labels = sst2_labelled("dev")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Seeded before the new head (and a peft method's matrices) are initialised, as run_glue.py does: the Trainer
    # seeds only when it is built, after the model, so without this a seed's run differed from process to process.
    transformers.set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    padding = "max_length" if recipe == "fixed" else False
    encoded = tokenizer(texts, truncation=True, max_length=SEQ, padding=padding)
    train = [dict({k: encoded[k][i] for k in encoded}, labels=labels[i]) for i in range(len(texts))]

    class Clock(TrainerCallback):
        def __init__(self):
            self.begin, self.ends, self.padded = None, [], 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    clock = Clock()
    collator = DataCollatorWithPadding(tokenizer)
    padded = []

    def counting_collator(features):
        batch = collator(features)
        padded.extend([batch["input_ids"].shape[1]] * len(features))
        return batch

    arguments = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
        learning_rate=learning_rate, weight_decay=WEIGHT_DECAY, warmup_steps=WARMUP, lr_scheduler_type="linear",
        max_grad_norm=1.0, num_train_epochs=1, seed=seed, save_strategy="no", eval_strategy="no",
        logging_strategy="no", report_to="none", use_cpu=True, dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if recipe == "group_by_length" else "random")
    trainer = Trainer(model=model, args=arguments, train_dataset=train, data_collator=counting_collator,
                      processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    train_padded = list(padded)
    start = time.perf_counter()  # dev prediction from raw text, the way HF users write it
    dev = tokenizer(dev_texts, truncation=True, max_length=SEQ, padding=padding)
    order = sorted(range(len(dev_texts)), key=lambda i: len(dev["input_ids"][i]))
    dev_rows = [{k: dev[k][i] for k in dev} for i in order]
    logits = trainer.predict(dev_rows).predictions
    inference_s = time.perf_counter() - start
    # Under group_by_length, transformers predicts with its LengthGroupedSampler too (Trainer._get_eval_sampler since
    # huggingface/transformers#33514, seeded since #48025): predictions come back in that sampler's order, not the
    # dataset's (scored in dataset order they give chance accuracy). The seeded sampler gives the order back.
    sampler = trainer._get_eval_sampler(dev_rows)
    served = list(sampler) if sampler is not None else list(range(len(dev_rows)))
    predicted = np.empty(len(order), np.int64)
    predicted[np.asarray(order)[served]] = logits.argmax(-1)
    return {"dev_accuracy": float(np.mean(predicted == np.asarray(dev_labels))),
            "train_examples_per_s": _steady_rate(clock.ends), "first_step_s": clock.ends[0] - clock.begin,
            "epoch_wall_s": clock.ends[-1] - clock.begin, "inference_examples_per_s": len(dev_texts) / inference_s,
            "mean_padded_length": sum(train_padded) / len(train_padded),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "library": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads"}


def encoder_hf(model_dir: str) -> dict:
    """BertModel forward, eager under inference_mode, batch 32 of dev sentences padded to 64 and 128."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    texts = sst2_labelled("dev")[0]
    rates = {}
    for length in (64, 128):
        batches = [tokenizer(texts[i:i + BATCH], truncation=True, max_length=length, padding="max_length",
                             return_tensors="pt") for i in range(0, ENCODER_BATCHES * BATCH, BATCH)]
        with torch.inference_mode():
            model(**batches[0])
            best = 0.0
            for _ in range(3):
                start = time.perf_counter()
                for b in batches:
                    model(**b).last_hidden_state.sum().item()
                best = max(best, len(batches) * BATCH / (time.perf_counter() - start))
        rates[f"torch eager, length {length}"] = best
    return {"rates": rates}


# ------------------------------------------------------------------------------------------------- our side
def encoder_ours(model_dir: str) -> dict:
    """Our BertEncoder forward in a tf.function and under XLA, the same batches as encoder_hf."""
    import numpy as np
    import tensorflow as tf

    from tfx_transfer import BertEncoder, BertTokenizer
    from tfx_transfer.text.packer import BertPacker

    encoder = BertEncoder.from_pretrained(model_dir)
    tokenizer = BertTokenizer.from_pretrained(model_dir)
    texts = sst2_labelled("dev")[0]
    rates = {}
    for length in (64, 128):
        packer = BertPacker.for_tokenizer(tokenizer, length, pad_to_max_length=True)
        batches = [packer([tokenizer.tokenize(texts[i:i + BATCH])]) for i in range(0, ENCODER_BATCHES * BATCH, BATCH)]
        for jit in (False, True):
            forward = tf.function(lambda x: encoder(x, training=False)["sequence_output"], jit_compile=jit)
            forward(batches[0]).numpy()
            best = 0.0
            for _ in range(3):
                start = time.perf_counter()
                for b in batches:
                    np.asarray(forward(b)).sum()
                best = max(best, len(batches) * BATCH / (time.perf_counter() - start))
            rates[f"tfx_transfer {'XLA' if jit else 'tf.function'}, length {length}"] = best
    return {"rates": rates}


def ours_command(flags, output_dir: str, seed: int = SEED):
    return [sys.executable, str(REPO / "run_classifier.py"), "--task_name=sst2",
            f"--data_dir={SHARED_DATA / 'glue_data' / 'SST-2'}", f"--max_train_examples={TRAIN_ROWS}", "--do_train",
            "--do_eval", f"--output_dir={output_dir}", f"--train_batch_size={BATCH}", f"--eval_batch_size={BATCH}",
            f"--max_seq_length={SEQ}", f"--learning_rate={LR}", "--num_train_epochs=1", f"--seed={seed}",
            f"--warmup_proportion={WARMUP}", f"--weight_decay={WEIGHT_DECAY}", "--save_checkpoints_steps=100000",
            *flags]


def read_ours(output_dir: str) -> dict:
    """run_classifier's own account of the run: final/model_card.json (training timings, metrics)."""
    with open(os.path.join(output_dir, "final", "model_card.json"), encoding="utf-8") as f:
        card = json.load(f)
    training, evaluation = card["training"], card.get("evaluation") or {}
    return {"dev_accuracy": card["metrics"]["eval_accuracy"],
            "train_examples_per_s": training.get("steady_examples_per_s") or training["examples_per_s"],
            "first_step_s": training.get("first_step_seconds"), "epoch_wall_s": training["seconds"],
            "inference_examples_per_s": evaluation.get("examples_per_s"),
            "mean_padded_length": training.get("mean_padded_length")}


# --------------------------------------------------------------------------------------------------- driver
def _child(python, args):
    """Runs this file's --hf/--encoder mode in `python`; returns (its RESULT, wall seconds, peak RSS GiB)."""
    return child_result([python, __file__, *args])


def run_row(name: str, torch_python: str, seed: int = SEED) -> dict:
    if name in HF_RECIPES:
        result, wall, rss = _child(torch_python, [f"--hf={HF_RECIPES[name]}", f"--seed={seed}"])
    else:
        with tempfile.TemporaryDirectory() as out:
            _, wall, rss = timed_process(ours_command(OURS[name], out, seed), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            result = read_ours(out)
    result.update(process_wall_s=wall, peak_rss_gib=rss, seed=seed)
    return result


def _median_rows(rounds):
    merged = median_rows(rounds)
    for name, row in merged.items():
        accuracies = [v["dev_accuracy"] for v in row["rounds"]]
        row["dev_accuracy_mean"] = statistics.mean(accuracies)
        row["dev_accuracy_std"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        row["seeds"] = sorted({v["seed"] for v in row["rounds"]})
    return merged


def _fmt(x, spec):
    return "" if x is None else format(x, spec)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hf", choices=sorted(set(HF_RECIPES.values())))
    parser.add_argument("--encoder", choices=["hf", "ours"])
    parser.add_argument("--rounds", type=int, default=1, help="Interleaved rounds per seed (medians reported).")
    parser.add_argument("--seeds", default=str(SEED),
                        help="Comma-separated seeds, one interleaved round each (accuracy: mean and std over them).")
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)  # the --hf child's
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"Comma-separated SST-2 rows to run, of: {', '.join(SYSTEMS)}.")
    parser.add_argument("--torch_python", default=sys.executable,
                        help="Interpreter with torch + transformers (default: this one).")
    parser.add_argument("--results_name", default="peers_torch",
                        help="bench/results/<name>.{json,md} (e.g. a partial run beside the full table).")
    parser.add_argument("--skip_sst2", action="store_true")
    parser.add_argument("--skip_encoder", action="store_true")
    args = parser.parse_args()
    if args.hf or args.encoder:
        if args.hf:
            result = run_hf(args.hf, packaged_model_dir(), args.seed)
        else:
            result = (encoder_hf if args.encoder == "hf" else encoder_ours)(packaged_model_dir())
        print("RESULT " + json.dumps(result), flush=True)
        return
    check = subprocess.run([args.torch_python, "-c", "import torch, transformers, accelerate"], capture_output=True)
    if check.returncode:
        raise SystemExit("Hugging Face + PyTorch is not installed: `pip install torch==2.13.0` then "
                         "`pip install -e .[torch]` (or pass --torch_python=<an interpreter that has them>).")
    peak = matmul_gflops()
    print(f"fp32 matmul: {peak:.0f} GFLOP/s", flush=True)
    encoder = {}
    for side in () if args.skip_encoder else ("hf", "ours", "hf", "ours"):  # two interleaved rounds, best kept
        result, _, _ = _child(args.torch_python if side == "hf" else sys.executable, [f"--encoder={side}"])
        for key, rate in result["rates"].items():
            encoder[key] = max(encoder.get(key, 0.0), rate)
        print(f"encoder {side}: " + ", ".join(f"{k} {v:.1f}" for k, v in result["rates"].items()), flush=True)
    rows = {}
    if not args.skip_sst2:
        order = [name for name in SYSTEMS if name in set(args.systems.split(","))]
        unknown = set(args.systems.split(",")) - set(SYSTEMS)
        if unknown:
            raise SystemExit(f"--systems: unknown rows {sorted(unknown)}; rows: {SYSTEMS}")
        seeds = [int(x) for x in args.seeds.split(",")]
        rounds = []
        for round_index, seed in enumerate(seed for seed in seeds for _ in range(args.rounds)):
            this = {}
            for name in order:
                this[name] = run_row(name, args.torch_python, seed)
                r = this[name]
                print(f"[{round_index + 1}, seed {seed}] {name:24s} process {r['process_wall_s']:.0f} s  acc "
                      f"{100 * r['dev_accuracy']:.2f}%  train {r['train_examples_per_s']:.1f} ex/s  first step "
                      f"{_fmt(r['first_step_s'], '.1f')} s  infer {_fmt(r['inference_examples_per_s'], '.0f')} ex/s  "
                      f"padded {_fmt(r['mean_padded_length'], '.1f')}", flush=True)
            rounds.append(this)
        rows = _median_rows(rounds)
    q = ratios(encoder, rows)
    write_results(args.results_name, {"matmul_gflops": peak, "encoder": encoder, "sst2": rows, "ratios": q},
                  table(peak, encoder, rows, args, q))


def ratios(encoder, rows):
    out = {}
    for length in (64, 128) if encoder else ():
        torch_rate = encoder.get(f"torch eager, length {length}")
        ours = max(v for k, v in encoder.items() if k.startswith("tfx_transfer") and k.endswith(f"length {length}"))
        out[f"encoder_length_{length}_ours_over_torch"] = ours / torch_rate if torch_rate else None
    if PEER in rows and OURS_DEFAULT in rows:
        peer, ours = rows[PEER], rows[OURS_DEFAULT]
        out["process_wall_ours_over_hf"] = ours["process_wall_s"] / peer["process_wall_s"]
        out["dev_inference_ours_over_hf"] = ours["inference_examples_per_s"] / peer["inference_examples_per_s"] \
            if ours["inference_examples_per_s"] else None
        out["accuracy_ours_minus_hf"] = ours["dev_accuracy_mean"] - peer["dev_accuracy_mean"]
        out["peak_rss_ours_over_hf"] = ours["peak_rss_gib"] / peer["peak_rss_gib"]
    if PEER in rows and OURS_INT8 in rows and rows[OURS_INT8]["inference_examples_per_s"]:
        int8, peer = rows[OURS_INT8], rows[PEER]
        out["dev_inference_int8_over_hf"] = int8["inference_examples_per_s"] / peer["inference_examples_per_s"]
        if OURS_DEFAULT in rows:
            out["accuracy_int8_minus_float32"] = int8["dev_accuracy_mean"] - rows[OURS_DEFAULT]["dev_accuracy_mean"]
    return out


def _accuracy(row):
    if len(row["rounds"]) == 1:
        return f"{100 * row['dev_accuracy']:.2f}%"
    return f"{100 * row['dev_accuracy_mean']:.2f} +- {100 * row['dev_accuracy_std']:.2f}%"


def table(peak, encoder, rows, args, q):
    from tfx_transfer.config import BertConfig

    config = BertConfig.from_json_file(os.path.join(packaged_model_dir(), "config.json"))
    command = shlex.join(["python", "bench/peers_torch.py",
                          *(a for a in sys.argv[1:] if not a.startswith("--torch_python"))])
    seeds = args.seeds.split(",")
    rounds = len(seeds) * args.rounds
    lines = ["# tfx_transfer vs Hugging Face transformers + PyTorch (same machine, same run)", "",
             f"Command: `{command}`; fp32 matmul rate in this run: {peak:.0f} "
             "GFLOP/s (the MFU denominator). Every SST-2 row is a fresh process started as a user starts it; "
             f"{'medians of ' + str(rounds) + ' interleaved rounds' if rounds > 1 else 'one interleaved round'}"
             f"{' (seeds ' + ', '.join(seeds) + '; accuracy: mean +- std over them)' if len(seeds) > 1 else ''}.",
             ""]
    if rows:
        lines += ["## SST-2-8k, full fine-tuning of all-MiniLM-L6-v2 (train 8,000, dev 872)", "",
                  "| system | mean padded length | process wall s | epoch wall s | first step s | train ex/s "
                  "(steps 20..end) | MFU | dev inference ex/s (raw text) | dev acc | peak RSS GiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in rows.items():
            flops = 3 * bert_forward_flops(config, [r["mean_padded_length"] or SEQ])
            mfu = flops * r["train_examples_per_s"] / 1e9 / peak
            lines.append(f"| {name} | {_fmt(r['mean_padded_length'], '.1f')} | {r['process_wall_s']:.0f} | "
                         f"{r['epoch_wall_s']:.0f} | {_fmt(r['first_step_s'], '.1f')} | "
                         f"{r['train_examples_per_s']:.1f} | {100 * mfu:.0f}% | "
                         f"{_fmt(r['inference_examples_per_s'], '.0f')} | {_accuracy(r)} | "
                         f"{r['peak_rss_gib']:.2f} |")
        lines += [""]
    if "process_wall_ours_over_hf" in q:
        lines += [f"- whole process, ours / HF group_by_length: **{q['process_wall_ours_over_hf']:.2f}x** the "
                  "wall time (goal <= 0.8x)",
                  f"- dev prediction from raw text, ours / HF sorted dynamic padding: "
                  f"**{_fmt(q['dev_inference_ours_over_hf'], '.2f')}x** (goal >= 1.2x)",
                  f"- accuracy, ours - HF: {100 * q['accuracy_ours_minus_hf']:+.2f} points; peak RSS ours / HF: "
                  f"{q['peak_rss_ours_over_hf']:.2f}x", ""]
    if "dev_inference_int8_over_hf" in q:
        lines += [f"- dev prediction with --inference_dtype=int8, ours / HF: **{q['dev_inference_int8_over_hf']:.2f}x**"
                  + (f"; accuracy int8 - float32: {100 * q['accuracy_int8_minus_float32']:+.2f} points"
                     if "accuracy_int8_minus_float32" in q else ""), ""]
    if not encoder:
        return lines
    lines += ["## Encoder forward at equal shapes (batch 32, SST-2 dev sentences padded to the length)", "",
              "| system | length 64 ex/s | length 128 ex/s |", "|---|---:|---:|"]
    names = sorted({k.rsplit(", length", 1)[0] for k in encoder})
    for name in names:
        lines.append(f"| {name} | {encoder.get(name + ', length 64', 0):.1f} | "
                     f"{encoder.get(name + ', length 128', 0):.1f} |")
    lines += ["", f"- ours (best of tf.function / XLA) / PyTorch eager: length 64 "
                  f"**{q['encoder_length_64_ours_over_torch']:.2f}x**, length 128 "
                  f"**{q['encoder_length_128_ours_over_torch']:.2f}x** (goal >= 1.2x)"]
    return lines


if __name__ == "__main__":
    main()
