"""The run_squad.py job: SQuAD v1.1 / v2.0 span prediction from flags (google-research/bert's command line).

Outputs in --output_dir: predictions.json, nbest_predictions.json, null_odds.json (v2), eval_results.json (with
--eval, the official scripts' metrics), final/ (the trained model, a valid --init_checkpoint), checkpoints/, logs/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

import keras
from absl import logging

from tfx_transfer.data.squad import build_features, features_to_split, postprocess, read_squad
from tfx_transfer.jobs import distribution, flags, trainer
from tfx_transfer.jobs.best_model import evaluation_schedule
from tfx_transfer.jobs.cli import run_main
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.inference_precision import predicts_in_int8, validate_inference_dtype
from tfx_transfer.jobs.model_card import ModelCard
from tfx_transfer.jobs.model_setup import build_encoder, prepare_model, resolve_model_source
from tfx_transfer.jobs.options import SquadOptions
from tfx_transfer.jobs.outputs import checkpoint_dir, export_and_plot, finish_training, output_path, write_text
from tfx_transfer.jobs.run_lock import OutputDirLock
from tfx_transfer.jobs.training import compile_and_train
from tfx_transfer.metrics.squad import evaluate
from tfx_transfer.models.span_labeler import BertSpanLabeler
from tfx_transfer.text.tokenizer import BertTokenizer


def define_flags():
    """run_squad.py's absl flags (see jobs/flags.py)."""
    flags.define_squad_flags()


def _validate(o: SquadOptions, source):
    flags.validate_common(o, source.max_positions)
    if o.do_train and not o.train_file:
        raise FlagError("If --do_train is True, then --train_file must be specified.")
    if o.do_predict and not o.predict_file:
        raise FlagError("If --do_predict is True, then --predict_file must be specified.")
    if o.max_seq_length <= o.max_query_length + 3:
        raise FlagError(f"The max_seq_length ({o.max_seq_length}) must be greater than max_query_length "
                        f"({o.max_query_length}) + 3.")
    if not 0 < o.doc_stride < o.max_seq_length:
        raise FlagError(f"--doc_stride={o.doc_stride} must be between 1 and --max_seq_length - 1 "
                        f"({o.max_seq_length - 1}).")
    if o.find_null_threshold and not o.version_2_with_negative:
        raise FlagError("--find_null_threshold needs --version_2_with_negative (SQuAD 2.0).")
    if (o.eval or o.find_null_threshold) and not o.do_predict:
        raise FlagError("--eval and --find_null_threshold score predictions: add --do_predict.")
    validate_inference_dtype(o)


def _metric_names(o: SquadOptions):
    """The official script's scores, as evaluation during training reports them."""
    names = ("exact", "f1", "best_exact", "best_f1") if o.version_2_with_negative else ("exact_match", "f1")
    return [f"eval_{name}" for name in names]


def _keep_best(o: SquadOptions):
    if not o.training.evaluates_during_training:
        return None
    if not (o.do_predict and o.eval):
        raise FlagError("--eval_every_steps / --eval_every_epoch score --predict_file during training: add "
                        "--do_predict --eval.")
    return flags.validate_keep_best(o, _metric_names(o), default="eval_f1")


@dataclasses.dataclass
class _SquadFile:
    """A SQuAD file read and cut into features before anything trains."""

    path: str
    examples: list
    dataset: list
    features: list
    split: object


def _read(o: SquadOptions, path, tokenizer, is_training) -> _SquadFile:
    start = time.perf_counter()
    examples, dataset = read_squad(path, is_training, o.version_2_with_negative)
    if is_training and o.training.max_train_examples:
        examples = examples[:o.training.max_train_examples]
    features = build_features(examples, tokenizer, o.max_seq_length, o.doc_stride, o.max_query_length, is_training)
    logging.info("%s: %d questions -> %d features in %.1f s.", path, len(examples), len(features),
                 time.perf_counter() - start)
    return _SquadFile(path, examples, dataset, features, features_to_split(features, o.max_seq_length))


def _predict(o: SquadOptions, model, data: _SquadFile, tokenizer):
    """(predictions, nbest, null_odds, official scores or None) of `model` on `data`."""
    start = time.perf_counter()
    logits = trainer.predict(model, data.split, batch_size=o.predict_batch_size, max_seq_length=o.max_seq_length,
                             jit_compile=o.training.jit_compile, padding=o.training.batch_padding,
                             per_token=True, int8=predicts_in_int8(o))
    seconds = time.perf_counter() - start
    logging.info("Predicted %d features in %.1f s (%.1f features/s).", len(data.features), seconds,
                 len(data.features) / seconds)
    predictions, nbest, null_odds = postprocess(
        data.examples, data.features, logits["start_logits"], logits["end_logits"], tokenizer.vocab,
        tokenizer.do_lower_case, o.n_best_size, o.max_answer_length, o.version_2_with_negative,
        o.null_score_diff_threshold)
    results = None
    if o.eval or o.find_null_threshold:
        results = evaluate(data.dataset, predictions, null_odds if o.version_2_with_negative else None,
                           version_2=o.version_2_with_negative)
    return predictions, nbest, null_odds, results


def run(o: SquadOptions):
    """Runs the job; every input is read and cut into features before the model is built, and a live run into the
    same --output_dir is refused."""
    flags.warn_ignored_tpu_flags(o)
    strategy = distribution.strategy(o.distribution)  # before TensorFlow touches a device
    source = resolve_model_source(o.model)
    _validate(o, source)
    keep_best = _keep_best(o)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    train = _read(o, o.train_file, tokenizer, is_training=True) if o.do_train else None
    predict = _read(o, o.predict_file, tokenizer, is_training=False) if o.do_predict else None
    out = o.output.output_dir
    os.makedirs(out, exist_ok=True)
    with OutputDirLock(out) if distribution.is_chief() else contextlib.nullcontext():
        return _run(o, strategy, source, tokenizer, train, predict, keep_best)


def _run(o: SquadOptions, strategy, source, tokenizer, train, predict, keep_best):
    out = o.output.output_dir
    keras.utils.set_random_seed(o.training.seed)
    with strategy.scope():
        model = BertSpanLabeler(build_encoder(source, o.model, o.distribution, needs_layers=predicts_in_int8(o)))
        report = prepare_model(model, source, o.model, will_train=o.do_train)
    task_name = "squad_v2" if o.version_2_with_negative else "squad_v1.1"
    card = ModelCard("run_squad.py", o)
    card.base_model(source)
    card.load_report = str(report) if report is not None else None
    task = {"task": task_name, "max_seq_length": o.max_seq_length, "doc_stride": o.doc_stride,
            "max_query_length": o.max_query_length, "initialised_from": source.description}  # final/task.json
    card.task = task
    for role, data in (("train", train), ("predict", predict)):
        if data is not None:
            card.data_file(role, data.path, len(data.examples))

    global_step, final_dir = 0, None
    if o.do_train:
        evaluation = None
        if keep_best:
            names = _metric_names(o)

            def score(trained):
                return {f"eval_{k}": v for k, v in _predict(o, trained, predict, tokenizer)[3].items()
                        if f"eval_{k}" in names}

            evaluation = evaluation_schedule(score, keep_best, o.training, checkpoint_dir(out),
                                             write=distribution.is_chief())
        result = compile_and_train(model, train.split, "features", o.training, o.max_seq_length, out,
                                   vocab_file=tokenizer.vocab_file, evaluation=evaluation)
        global_step = result["steps"]
        logging.info("Trained to step %d; %.2f features/s.", global_step, result["examples_per_s"])
        final_dir = finish_training(model, result, evaluation, card, task, out, tokenizer, o.model.adaptation)

    if o.do_predict:
        predictions, nbest, null_odds, results = _predict(o, model, predict, tokenizer)
        if results is not None:
            if o.find_null_threshold:
                threshold = results["best_f1_thresh"]
                predictions = {q: ("" if null_odds[q] > threshold else
                                   next((n["text"] for n in nbest[q] if n["text"]), "")) for q in predictions}
                results["null_score_diff_threshold"] = threshold
                logging.info("Best null threshold on %s: %.4f (F1 %.2f).", o.predict_file, threshold,
                             results["best_f1"])
            results["global_step"] = global_step
        write_text(output_path(out, "predictions.json"), json.dumps(predictions, indent=2) + "\n")
        write_text(output_path(out, "nbest_predictions.json"), json.dumps(nbest, indent=2) + "\n")
        if o.version_2_with_negative:
            write_text(output_path(out, "null_odds.json"), json.dumps(null_odds, indent=2) + "\n")
        if results is not None:
            write_text(output_path(out, "eval_results.json"), json.dumps(results, indent=2) + "\n")
            logging.info("***** Eval results *****\n%s", json.dumps(results, indent=2))
            card.metrics = results
            if final_dir:
                card.write(final_dir)
        for example in predict.examples[:3]:
            print(f"  {example.question_text!r} -> {predictions[example.qas_id]!r}", flush=True)

    export_and_plot(o, model, card, tokenizer, task="squad", doc_stride=o.doc_stride,
                    max_query_length=o.max_query_length, max_answer_length=o.max_answer_length,
                    version_2=o.version_2_with_negative, null_score_diff_threshold=o.null_score_diff_threshold)
    return 0


def main(argv):
    """absl entry point: the flags parsed once into `SquadOptions`; one-line errors and exit code 2."""
    return run_main(lambda: run(flags.parse_squad_options()), argv)
