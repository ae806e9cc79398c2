"""The run_classifier.py job: fine-tune, evaluate and predict a sentence (pair) classifier from flags.

Outputs in --output_dir (google-research/bert's, plus ours):
  eval_results.txt        `key = value` lines: eval_<metric> (the official metric first), eval_loss, global_step
  test_results.tsv        class probabilities per test example (a score for regression), one line each
  eval_probabilities.tsv  class probabilities per dev example (--do_eval): input of `adaptation.ensembling`
  train_probabilities.tsv with --write_train_probabilities: a teacher for --teacher_probabilities (distillation)
  <Task>.tsv              GLUE submission file: index<TAB>prediction (label names, or scores)
  final/                  model.keras, config.json, vocab.txt, task.json (+ adapter.safetensors when only part of
                          the model trained): usable as --init_checkpoint and for export
  checkpoints/            resumable training state;  logs/  TensorBoard scalars
With --probe_layers (and --adaptation=feature_extraction): a linear classifier per encoder layer, scored per layer
in probe_results.tsv / .png instead (jobs/probing.py).
"""

from __future__ import annotations

import contextlib
import os
import time

import keras
import numpy as np
from absl import logging

from tfx_transfer.adaptation.ensembling import write_probabilities
from tfx_transfer.data.pipeline import encode_examples
from tfx_transfer.jobs import distribution, flags, multitask_export, trainer
from tfx_transfer.jobs.best_model import evaluation_schedule
from tfx_transfer.jobs.classifier_data import read_classifier_data
from tfx_transfer.jobs.classifier_schemes import distillation_targets, train_multitask
from tfx_transfer.jobs.classifier_setup import (build_model, scores_from_logits, task_loss, task_processor,
                                                validate_schemes)
from tfx_transfer.jobs.cli import run_main
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.inference_precision import predicts_in_int8, validate_inference_dtype
from tfx_transfer.jobs.model_card import ModelCard
from tfx_transfer.jobs.model_setup import resolve_model_source
from tfx_transfer.jobs.options import ClassifierOptions
from tfx_transfer.jobs.probing import check_probing, run_probes
from tfx_transfer.jobs.outputs import checkpoint_dir, export_and_plot, finish_training, output_path, write_text
from tfx_transfer.jobs.run_lock import OutputDirLock
from tfx_transfer.jobs.training import compile_and_train
from tfx_transfer.metrics.glue import compute
from tfx_transfer.text.tokenizer import BertTokenizer


def define_flags():
    """run_classifier.py's absl flags (see jobs/flags.py)."""
    flags.define_classifier_flags()


def _predicted_scores(o: ClassifierOptions, model, processor, split, batch_size):
    """Probabilities [N, C] (scores [N] for regression) of `model` on `split`, in file order."""
    outputs = trainer.predict(model, split, batch_size=batch_size, max_seq_length=o.max_seq_length,
                              jit_compile=o.training.jit_compile, padding=o.training.batch_padding,
                              int8=predicts_in_int8(o))
    return scores_from_logits(processor, outputs)


def evaluate(o: ClassifierOptions, model, processor, split, name="eval", keep_scores=None):
    """`{name}_<metric>` and `{name}_loss` on `split`; the probabilities (or scores) go into `keep_scores[name]`
    when a dict is given."""
    scores = _predicted_scores(o, model, processor, split, o.eval_batch_size)
    if keep_scores is not None:
        keep_scores[name] = scores
    return score_results(processor, scores, split.labels, name)


def score_results(processor, scores, labels, name="eval"):
    """`{name}_<metric>` and `{name}_loss` of probabilities [N, C] (scores [N] for regression) against `labels`."""
    if processor.is_regression:
        predictions = scores
        loss = float(np.mean((scores - labels) ** 2))
    else:
        predictions = scores.argmax(axis=1)
        loss = float(-np.mean(np.log(np.maximum(scores[np.arange(len(scores)), labels], 1e-12))))
    results = {f"{name}_{metric}": value for metric, value in compute(processor.metrics, labels,
                                                                      predictions).items()}
    results[f"{name}_loss"] = loss
    return results


def _keep_best(o: ClassifierOptions, processor):
    """The metric that picks the best model during training (None without evaluation during training)."""
    if not o.training.evaluates_during_training:
        return None
    if not o.do_eval:
        raise FlagError("--eval_every_steps / --eval_every_epoch evaluate on the dev set: add --do_eval.")
    if o.auxiliary_tasks:
        raise FlagError("--auxiliary_tasks trains with its own loop: evaluation during training is not supported "
                        "with it.")
    return flags.validate_keep_best(o, [f"eval_{m}" for m in processor.metrics] + ["eval_loss"],
                                    default=f"eval_{processor.metrics[0]}")


def run(o: ClassifierOptions):
    """Runs the job `o` describes; raises FlagError/ValueError/FileNotFoundError with one-line messages. Every input
    is read and checked before the model is built, and a live run into the same --output_dir is refused."""
    flags.warn_ignored_tpu_flags(o)
    if o.export_tasks:
        return multitask_export.run(o)
    strategy = distribution.strategy(o.distribution)  # before TensorFlow touches a device
    source = resolve_model_source(o.model)
    processor, data_dir = task_processor(o, source.labels)
    flags.validate_common(o, source.max_positions, modes=("do_train", "do_eval", "do_predict", "do_export"))
    validate_schemes(o, processor)
    validate_inference_dtype(o)
    keep_best = _keep_best(o, processor)
    probed = check_probing(o, source)
    out = o.output.output_dir
    os.makedirs(out, exist_ok=True)
    with OutputDirLock(out) if distribution.is_chief() else contextlib.nullcontext():
        data = read_classifier_data(o, processor, data_dir, BertTokenizer.from_settings(source.tokenizer))
        if probed:
            return _probe(o, strategy, source, processor, data, probed)
        return _run(o, strategy, source, processor, data, keep_best)


def _probe(o: ClassifierOptions, strategy, source, processor, data, layers):
    """--probe_layers: a linear classifier per layer on the mean of its token vectors (jobs/probing.py)."""
    keras.utils.set_random_seed(o.training.seed)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    train, dev = (encode_examples(examples, tokenizer, o.max_seq_length, processor.labels)
                  for examples in (data.train, data.dev))
    num_outputs = 1 if processor.is_regression else len(processor.labels)
    run_probes(o, strategy, source, layers, num_outputs, False, train, dev,
               lambda logits: score_results(processor, scores_from_logits(processor, logits), dev.labels), "examples")
    return 0


def _run(o: ClassifierOptions, strategy, source, processor, data, keep_best):
    out = o.output.output_dir
    keras.utils.set_random_seed(o.training.seed)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    labels = processor.labels
    with strategy.scope():
        model, report = build_model(o, source, processor)
    card = ModelCard("run_classifier.py", o)
    card.base_model(source)
    for role, path, rows in data.files:
        card.data_file(role, path, rows)
    card.load_report = str(report) if report is not None else None
    task = {"task": processor.name, "labels": labels, "metrics": list(processor.metrics),
            "max_seq_length": o.max_seq_length, "pairs": processor.pairs,
            "initialised_from": source.description}  # final/task.json
    if o.model.stack_adapters or o.model.fuse_adapters:  # what final/adapter.safetensors refers to
        task["composed_adapters"] = list(o.model.stack_adapters or o.model.fuse_adapters)
    card.task = task

    def encode(examples):
        return encode_examples(examples, tokenizer, o.max_seq_length, labels)

    encoding_start = time.perf_counter()
    dev_split = encode(data.dev) if o.do_eval else None
    dev_encoding_seconds = time.perf_counter() - encoding_start
    global_step, auxiliary, final_dir = 0, {}, None
    if o.do_train:
        train_split = data.train if getattr(data.train, "streamed", False) else encode(data.train)
        loss = task_loss(processor)
        if data.teacher is not None:
            train_split, loss = distillation_targets(o, train_split, data.teacher)
        evaluation = None
        if keep_best:  # evaluation during training, on the dev set
            evaluation = evaluation_schedule(lambda trained: evaluate(o, trained, processor, dev_split), keep_best,
                                             o.training, checkpoint_dir(out), write=distribution.is_chief())
        if o.auxiliary_tasks:
            result, auxiliary = train_multitask(o, model, processor, train_split, loss, tokenizer, data.auxiliary)
        else:
            result = compile_and_train(model, train_split, "examples", o.training, o.max_seq_length, out, loss=loss,
                                       vocab_file=tokenizer.vocab_file, evaluation=evaluation)
        global_step = result["steps"]
        logging.info("Trained to step %d (%s); %.1f examples/s.", global_step,
                     f"resumed from {result['resumed_from']}" if result["resumed_from"] else "from the start",
                     result["examples_per_s"])
        final_dir = finish_training(model, result, evaluation, card, task, out, tokenizer, o.model.adaptation, labels)
        if o.write_train_probabilities:
            write_probabilities(output_path(out, "train_probabilities.tsv"),
                                _predicted_scores(o, model, processor, train_split, o.eval_batch_size))

    if o.do_eval:
        dev_scores = {}
        evaluation_start = time.perf_counter()
        results = evaluate(o, model, processor, dev_split, keep_scores=dev_scores)
        card.record_evaluation(len(dev_split), dev_encoding_seconds + time.perf_counter() - evaluation_start)
        for name, (aux_model, aux_processor, aux_dev) in auxiliary.items():
            aux_split = encode_examples(aux_dev, tokenizer, o.max_seq_length, aux_processor.labels)
            results.update(evaluate(o, aux_model, aux_processor, aux_split, name=f"eval_{name}"))
        for name, examples in data.extra_dev.items():
            results.update(evaluate(o, model, processor, encode(examples), name=f"eval_{name}"))
        results["global_step"] = global_step
        lines = [f"{key} = {value}" for key, value in results.items()]
        write_text(output_path(out, "eval_results.txt"), "\n".join(lines) + "\n")
        if not processor.is_regression:
            write_probabilities(output_path(out, "eval_probabilities.tsv"), dev_scores["eval"])  # for ensembling
        logging.info("***** Eval results *****\n  %s", "\n  ".join(lines))
        card.metrics = results
        if final_dir:
            card.write(final_dir)  # final/'s card, now with the metrics

    if o.do_predict:
        test = data.test
        split = encode_examples(test, tokenizer, o.max_seq_length, None)
        scores = _predicted_scores(o, model, processor, split, o.predict_batch_size)
        rows = ["\t".join(f"{p:.6f}" for p in np.atleast_1d(row)) for row in scores]
        write_text(output_path(out, "test_results.tsv"), "\n".join(rows) + "\n")
        predictions = scores if processor.is_regression else [labels[i] for i in scores.argmax(axis=1)]
        submission = ["index\tprediction"] + [
            f"{i}\t{p:.3f}" if processor.is_regression else f"{i}\t{p}" for i, p in enumerate(predictions)]
        write_text(output_path(out, f"{processor.name}.tsv"), "\n".join(submission) + "\n")
        logging.info("Wrote test_results.tsv and %s.tsv (%d predictions).", processor.name, len(test))
        for example, prediction, score in list(zip(test, predictions, scores))[:3]:
            confidence = f"{score:.3f}" if processor.is_regression else f"p={np.max(score):.3f}"
            print(f"  {example.text_a!r} -> {prediction} ({confidence})", flush=True)

    export_and_plot(o, model, card, tokenizer, labels=labels, pairs=processor.pairs)
    return 0


def main(argv):
    """absl entry point: the flags parsed once into `ClassifierOptions`; one-line errors and exit code 2 for bad
    input."""
    return run_main(lambda: run(flags.parse_classifier_options()), argv)
