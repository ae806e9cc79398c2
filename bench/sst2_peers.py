"""run_classifier's training path against keras-hub (and HF transformers when torch is installed) on SST-2-8k.

Protocol of ../shared/DESIGN.md: all-MiniLM-L6-v2, first 8,000 SST-2 train rows, 1 epoch, batch 32, length 64,
AdamW lr 5e-5 (wd 0.01, no decay on LayerNorm/bias, global clip 1.0), 10% warmup + linear decay, seed 0;
accuracy on the 872 dev rows. Each configuration runs in a fresh process (clean peak RSS):

  keras-hub       BertTextClassifier.from_preset(<model dir>), its own preprocessor at sequence_length 64,
                  Keras AdamW with the same settings, fit on raw strings
  ours fixed 64   tfx_transfer's pipeline and trainer (what run_classifier.py runs), every batch padded to 64
  ours default    the same, each batch padded to its own longest row (run_classifier's default)

Hugging Face transformers on PyTorch, the first peer, is measured by bench/peers_torch.py (the optional .[torch]
extra).

    python bench/sst2_peers.py             # all, writes results/sst2_peers.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import bert_forward_flops, matmul_gflops, peak_rss_gib, sst2_labelled, write_results  # noqa: E402

TRAIN_ROWS, BATCH, SEQ, SEED, LR, WARMUP = 8000, 32, 64, 0, 5e-5, 0.1
STEPS = -(-TRAIN_ROWS // BATCH)


def _clock():
    import keras

    class Clock(keras.callbacks.Callback):
        """Wall time of every training step (across the trainer's per-epoch fit calls)."""

        def __init__(self):
            super().__init__()
            self.begin, self.ends = time.perf_counter(), []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    return Clock()


def _summary(clock, accuracy, inference_seconds, padded_tokens_per_example, config):
    measured = clock.ends[-1] - clock.ends[19]
    train_ex_s = (len(clock.ends) - 20) * BATCH / measured
    flops = 3 * sum(bert_forward_flops(config, [t]) for t in padded_tokens_per_example) / len(padded_tokens_per_example)
    return {"dev_accuracy": accuracy, "train_examples_per_s": train_ex_s, "first_step_s": clock.ends[0] - clock.begin,
            "epoch_wall_s": clock.ends[-1] - clock.begin, "inference_examples_per_s": 872 / inference_seconds,
            "train_gflops_per_s": flops * train_ex_s / 1e9, "peak_rss_gib": peak_rss_gib(),
            "mean_padded_length": sum(padded_tokens_per_example) / len(padded_tokens_per_example)}


def run_ours(padding: str) -> dict:
    import keras
    import numpy as np

    from tfx_transfer import BertClassifier, BertEncoder, BertTokenizer
    from tfx_transfer.adaptation.optimizers import create_optimizer
    from tfx_transfer.data.examples import InputExample
    from tfx_transfer.data.pipeline import encode_examples, plan_batches
    from tfx_transfer.jobs import trainer

    keras.utils.set_random_seed(SEED)
    texts, labels = sst2_labelled("train", TRAIN_ROWS)
    dev_texts, dev_labels = sst2_labelled("dev")
    tokenizer = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
    examples = [InputExample(str(i), t, None, str(y)) for i, (t, y) in enumerate(zip(texts, labels))]
    split = encode_examples(examples, tokenizer, SEQ, ["0", "1"])
    model = BertClassifier(BertEncoder.from_pretrained("all-MiniLM-L6-v2"), 2)
    model.compile(optimizer=create_optimizer(LR, STEPS, int(WARMUP * STEPS)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clock = _clock()
    with tempfile.TemporaryDirectory() as tmp:
        trainer.train(model, split, epochs=1, batch_size=BATCH, max_seq_length=SEQ, seed=SEED, checkpoint_dir=tmp,
                      save_every_steps=0, padding=padding, verbose=0, callbacks=[clock])
    plan = plan_batches(split.lengths, BATCH, SEQ, shuffle=True, seed=SEED, epoch=0, padding=padding)
    padded = [b.length for b in plan for _ in b.indices]
    start = time.perf_counter()  # inference from raw text: tokenisation included
    dev = encode_examples([InputExample(str(i), t) for i, t in enumerate(dev_texts)], tokenizer, SEQ)
    logits = trainer.predict(model, dev, batch_size=BATCH, max_seq_length=SEQ, padding=padding)
    inference = time.perf_counter() - start
    accuracy = float(np.mean(logits.argmax(-1) == np.asarray(dev_labels)))
    return _summary(clock, accuracy, inference, padded, model.encoder.bert_config)


def run_keras_hub() -> dict:
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from tfx_transfer.adaptation.optimizers import NO_DECAY, WarmupLinearDecay
    from tfx_transfer.checkpoints.keras_hub_presets import bert_config_from_keras_hub
    from tfx_transfer.pretrained import resolve_pretrained

    keras.utils.set_random_seed(SEED)
    model_dir = resolve_pretrained("all-MiniLM-L6-v2").directory
    texts, labels = sst2_labelled("train", TRAIN_ROWS)
    dev_texts, dev_labels = sst2_labelled("dev")
    classifier = keras_hub.models.BertTextClassifier.from_preset(model_dir, num_classes=2)
    classifier.preprocessor.sequence_length = SEQ
    optimizer = keras.optimizers.AdamW(learning_rate=WarmupLinearDecay(LR, STEPS, int(WARMUP * STEPS)),
                                       weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY))
    classifier.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       jit_compile=False)
    data = tf.data.Dataset.from_tensor_slices((texts, np.asarray(labels, "int32"))).shuffle(
        TRAIN_ROWS, seed=SEED, reshuffle_each_iteration=False).batch(BATCH)
    clock = _clock()
    classifier.fit(data, epochs=1, verbose=0, callbacks=[clock])
    start = time.perf_counter()
    logits = classifier.predict(dev_texts, batch_size=BATCH, verbose=0)
    inference = time.perf_counter() - start
    accuracy = float(np.mean(np.argmax(logits, -1) == np.asarray(dev_labels)))
    config = bert_config_from_keras_hub(classifier.backbone.get_config())
    return _summary(clock, accuracy, inference, [SEQ] * TRAIN_ROWS, config)


RUNS = {"keras-hub fixed 64": run_keras_hub, "tfx_transfer fixed 64": lambda: run_ours("max_length"),
        "tfx_transfer (default padding)": lambda: run_ours("longest")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", choices=sorted(RUNS))
    args = parser.parse_args()
    if args.run:
        print("RESULT " + json.dumps(dict(RUNS[args.run](), run=args.run)), flush=True)
        return
    peak = matmul_gflops()
    print(f"fp32 matmul: {peak:.0f} GFLOP/s", flush=True)
    results = {}
    for name in RUNS:
        out = subprocess.run([sys.executable, __file__, f"--run={name}"], capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            raise SystemExit(f"run {name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(line[0][len("RESULT "):])
        results[name]["mfu"] = results[name]["train_gflops_per_s"] / peak
        r = results[name]
        print(f"{name:24s} acc {100 * r['dev_accuracy']:.2f}%  train {r['train_examples_per_s']:.1f} ex/s  epoch "
              f"{r['epoch_wall_s']:.0f} s  infer {r['inference_examples_per_s']:.0f} ex/s  RSS {r['peak_rss_gib']:.2f} GiB",
              flush=True)
    peer, fixed, default = (results[k] for k in RUNS)
    ratios = {"train_ex_s_fixed_vs_keras_hub": fixed["train_examples_per_s"] / peer["train_examples_per_s"],
              "epoch_wall_keras_hub_over_default": peer["epoch_wall_s"] / default["epoch_wall_s"],
              "accuracy_fixed_minus_keras_hub": fixed["dev_accuracy"] - peer["dev_accuracy"],
              "accuracy_default_minus_keras_hub": default["dev_accuracy"] - peer["dev_accuracy"]}
    lines = ["# SST-2-8k: tfx_transfer vs keras-hub, full fine-tuning of all-MiniLM-L6-v2", "",
             "Protocol of ../shared/DESIGN.md, each configuration in a fresh process; fp32 matmul rate in this run: "
             f"{peak:.0f} GFLOP/s. Command: `python bench/sst2_peers.py`.", "",
             "| configuration | dev acc | train ex/s (steps 20..end) | epoch wall s | first step s | inference ex/s "
             "(raw text) | mean padded length | MFU | peak RSS GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {100 * r['dev_accuracy']:.2f}% | {r['train_examples_per_s']:.1f} | "
                     f"{r['epoch_wall_s']:.0f} | {r['first_step_s']:.1f} | {r['inference_examples_per_s']:.0f} | "
                     f"{r['mean_padded_length']:.0f} | {100 * r['mfu']:.0f}% | {r['peak_rss_gib']:.2f} |")
    lines += ["", f"- train examples/s at fixed length, ours / keras-hub: **{ratios['train_ex_s_fixed_vs_keras_hub']:.2f}x**",
              f"- whole-epoch wall time, keras-hub fixed / ours default: "
              f"**{ratios['epoch_wall_keras_hub_over_default']:.2f}x** faster",
              f"- accuracy, ours - keras-hub: fixed {100 * ratios['accuracy_fixed_minus_keras_hub']:+.2f} points, "
              f"default {100 * ratios['accuracy_default_minus_keras_hub']:+.2f} points"]
    write_results("sst2_peers", {"matmul_gflops": peak, "results": results, "ratios": ratios}, lines)


if __name__ == "__main__":
    main()
