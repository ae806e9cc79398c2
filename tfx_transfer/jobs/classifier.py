"""The run_classifier.py job: fine-tune, evaluate and predict a sentence (pair) classifier from flags.

Outputs in --output_dir (google-research/bert's, plus ours):
  eval_results.txt        `key = value` lines: eval_<metric> (the official metric first), eval_loss, global_step
  test_results.tsv        class probabilities per test example (a score for regression), one line each
  <Task>.tsv              GLUE submission file: index<TAB>prediction (label names, or scores)
  final/                  model.keras, config.json, vocab.txt, task.json (+ adapter.safetensors when only part of
                          the model trained): usable as --init_checkpoint and for export
  checkpoints/            resumable training state;  logs/  TensorBoard scalars
"""

from __future__ import annotations

import os

import keras
import numpy as np
from absl import logging

from tfx_transfer.data.glue import csv_processor, get_processor, task_names
from tfx_transfer.data.pipeline import encode_examples
from tfx_transfer.jobs import distribution, trainer
from tfx_transfer.jobs.cli import run_main
from tfx_transfer.jobs.flags import FLAGS, FlagError, define, define_common_flags, validate_common, warn_ignored_tpu_flags
from tfx_transfer.jobs.model_setup import (build_encoder, compile_and_train, prepare_model,
                                           resolve_model_source)
from tfx_transfer.jobs.outputs import output_path, save_final, write_text
from tfx_transfer.metrics.glue import compute
from tfx_transfer.models.classifier import BertClassifier
from tfx_transfer.text.tokenizer import BertTokenizer


def define_flags():
    define_common_flags(max_seq_length=128)
    define.DEFINE_string("task_name", None, f"The task: {', '.join(task_names())}.")
    define.DEFINE_string("data_dir", None, "Directory with the task's .tsv files.")
    define.DEFINE_bool("do_eval", False, "Evaluate on the dev set.")
    define.DEFINE_integer("eval_batch_size", 8, "Total batch size for evaluation.")
    define.DEFINE_string("train_file", None, "csv task: training file.")
    define.DEFINE_string("dev_file", None, "csv task: evaluation file.")
    define.DEFINE_string("test_file", None, "csv task: prediction file.")
    define.DEFINE_string("text_a_column", "0", "csv task: first text column (index or header name).")
    define.DEFINE_string("text_b_column", None, "csv task: second text column for pairs.")
    define.DEFINE_string("label_column", "1", "csv task: label column (index or header name).")
    define.DEFINE_list("label_list", None, "csv task: the labels (comma separated); omit for regression.")
    define.DEFINE_string("delimiter", "\t", "csv task: field delimiter.")
    define.DEFINE_bool("skip_header", True, "csv task: the files start with a header row.")
    define.DEFINE_enum("encoding_errors", "strict", ["strict", "replace"],
                       "Data files that are not UTF-8: fail naming the line (strict) or replace the bad bytes.")


def _processor():
    processor, data_dir = _find_processor()
    processor.encoding_errors = FLAGS.encoding_errors
    return processor, data_dir


def _find_processor():
    if not FLAGS.task_name:
        raise FlagError(f"--task_name is required; known tasks: {', '.join(task_names())}.")
    if FLAGS.task_name.lower() == "csv":
        if not (FLAGS.train_file or FLAGS.dev_file or FLAGS.test_file):
            raise FlagError("--task_name=csv needs --train_file, --dev_file and/or --test_file.")
        return csv_processor(FLAGS.train_file, FLAGS.dev_file, FLAGS.test_file, FLAGS.text_a_column,
                             FLAGS.text_b_column, FLAGS.label_column, FLAGS.label_list, FLAGS.delimiter,
                             FLAGS.skip_header), None
    try:
        processor = get_processor(FLAGS.task_name)
    except ValueError as e:
        raise FlagError(f"--task_name={FLAGS.task_name}: {e}") from None
    if processor.name == "demo":
        from tfx_transfer.data.glue import DEMO_DIR

        return processor, FLAGS.data_dir or DEMO_DIR
    if not FLAGS.data_dir:
        raise FlagError(f"--data_dir is required for --task_name={FLAGS.task_name}: the directory of its .tsv files.")
    if not os.path.isdir(FLAGS.data_dir):
        raise FlagError(f"--data_dir={FLAGS.data_dir}: no such directory.")
    return processor, FLAGS.data_dir


def _loss(processor):
    if processor.is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _scores(processor, outputs):
    """Probabilities [N, C] for classification; scores [N] for regression."""
    if processor.is_regression:
        return outputs[:, 0]
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def evaluate(model, processor, split, name="eval"):
    outputs = trainer.predict(model, split, batch_size=FLAGS.eval_batch_size, max_seq_length=FLAGS.max_seq_length,
                              jit_compile=FLAGS.jit_compile, bucket_by_length=FLAGS.bucket_by_length)
    scores = _scores(processor, outputs)
    if processor.is_regression:
        predictions = scores
        loss = float(np.mean((scores - split.labels) ** 2))
    else:
        predictions = scores.argmax(axis=1)
        loss = float(-np.mean(np.log(np.maximum(scores[np.arange(len(scores)), split.labels], 1e-12))))
    results = {f"{name}_{metric}": value for metric, value in compute(processor.metrics, split.labels,
                                                                      predictions).items()}
    results[f"{name}_loss"] = loss
    return results


def run():
    """Runs the job described by the flags; raises FlagError/ValueError/FileNotFoundError with one-line messages."""
    warn_ignored_tpu_flags()
    strategy = distribution.strategy()  # before TensorFlow touches a device
    processor, data_dir = _processor()
    source = resolve_model_source()
    validate_common(source.max_positions, modes=("do_train", "do_eval", "do_predict", "do_export"))
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    keras.utils.set_random_seed(FLAGS.seed)
    tokenizer = BertTokenizer(source.vocab_file, source.do_lower_case)
    labels = processor.labels
    with strategy.scope():
        # Head dropout = the encoder's hidden dropout (0.1 for BERT), as Hugging Face does.
        dropout = source.config.hidden_dropout_prob if source.config else 0.1
        model = BertClassifier(build_encoder(source), 1 if processor.is_regression else len(labels), dropout=dropout)
        prepare_model(model, source, head_patterns=[r"classifier/.*"])

    def encode(examples):
        return encode_examples(examples, tokenizer, FLAGS.max_seq_length, labels)

    global_step = 0
    if FLAGS.do_train:
        examples = processor.train_examples(data_dir)
        if FLAGS.max_train_examples:
            examples = examples[:FLAGS.max_train_examples]
        train_split = encode(examples)
        result = compile_and_train(model, train_split, "examples", loss=_loss(processor))
        global_step = result["steps"]
        logging.info("Trained to step %d (%s); %.1f examples/s.", global_step,
                     f"resumed from {result['resumed_from']}" if result["resumed_from"] else "from the start",
                     result["examples_per_s"])
        save_final(model, FLAGS.output_dir, source.vocab_file, tokenizer.do_lower_case,
                   {"task": processor.name, "labels": labels, "metrics": list(processor.metrics),
                    "max_seq_length": FLAGS.max_seq_length, "initialised_from": source.description},
                   FLAGS.adaptation, labels)

    if FLAGS.do_eval:
        results = evaluate(model, processor, encode(processor.dev_examples(data_dir)))
        for name, examples in processor.extra_dev_examples(data_dir).items():
            results.update(evaluate(model, processor, encode(examples), name=f"eval_{name}"))
        results["global_step"] = global_step
        lines = [f"{key} = {value}" for key, value in results.items()]
        write_text(output_path("eval_results.txt"), "\n".join(lines) + "\n")
        logging.info("***** Eval results *****\n  %s", "\n  ".join(lines))

    if FLAGS.do_predict:
        test = processor.test_examples(data_dir)
        split = encode_examples(test, tokenizer, FLAGS.max_seq_length, None)
        outputs = trainer.predict(model, split, batch_size=FLAGS.predict_batch_size,
                                  max_seq_length=FLAGS.max_seq_length, jit_compile=FLAGS.jit_compile,
                                  bucket_by_length=FLAGS.bucket_by_length)
        scores = _scores(processor, outputs)
        rows = ["\t".join(f"{p:.6f}" for p in np.atleast_1d(row)) for row in scores]
        write_text(output_path("test_results.tsv"), "\n".join(rows) + "\n")
        predictions = scores if processor.is_regression else [labels[i] for i in scores.argmax(axis=1)]
        submission = ["index\tprediction"] + [
            f"{i}\t{p:.3f}" if processor.is_regression else f"{i}\t{p}" for i, p in enumerate(predictions)]
        write_text(output_path(f"{processor.name}.tsv"), "\n".join(submission) + "\n")
        logging.info("Wrote test_results.tsv and %s.tsv (%d predictions).", processor.name, len(test))
        for example, prediction, score in list(zip(test, predictions, scores))[:3]:
            confidence = f"{score:.3f}" if processor.is_regression else f"p={np.max(score):.3f}"
            print(f"  {example.text_a!r} -> {prediction} ({confidence})", flush=True)

    if FLAGS.export_dir and (FLAGS.do_train or FLAGS.do_export) and distribution.is_chief():
        from tfx_transfer.export import export_for_serving

        path = export_for_serving(model, FLAGS.export_dir, tokenizer, labels=labels,
                                  max_seq_length=FLAGS.max_seq_length, pairs=processor.pairs,
                                  version=FLAGS.export_version)
        print(f"  exported for TF Serving: {path}", flush=True)
    return 0


def main(argv):
    """absl entry point: one-line errors and exit code 2 for bad input."""
    return run_main(run, argv)
