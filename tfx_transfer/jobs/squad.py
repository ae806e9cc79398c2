"""The run_squad.py job: SQuAD v1.1 / v2.0 span prediction from flags (google-research/bert's command line).

Outputs in --output_dir: predictions.json, nbest_predictions.json, null_odds.json (v2), eval_results.json (with
--eval, the official scripts' metrics), final/ (the trained model, a valid --init_checkpoint), checkpoints/, logs/.
"""

from __future__ import annotations

import json
import os
import time

import keras
from absl import logging

from tfx_transfer.data.squad import build_features, features_to_split, postprocess, read_squad
from tfx_transfer.jobs import distribution, trainer
from tfx_transfer.jobs.cli import run_main
from tfx_transfer.jobs.flags import FLAGS, FlagError, define, define_common_flags, validate_common, warn_ignored_tpu_flags
from tfx_transfer.jobs.model_setup import (build_encoder, compile_and_train, prepare_model,
                                           resolve_model_source)
from tfx_transfer.jobs.outputs import output_path, save_final, write_text
from tfx_transfer.metrics.squad import evaluate
from tfx_transfer.models.span_labeler import BertSpanLabeler
from tfx_transfer.text.tokenizer import BertTokenizer


def define_flags():
    define_common_flags(max_seq_length=384)
    define.DEFINE_string("train_file", None, "SQuAD JSON for training, e.g. train-v1.1.json.")
    define.DEFINE_string("predict_file", None, "SQuAD JSON for predictions, e.g. dev-v1.1.json.")
    define.DEFINE_integer("doc_stride", 128, "Stride between the windows of a long context, in tokens.")
    define.DEFINE_integer("max_query_length", 64, "Maximum question tokens; longer questions are truncated.")
    define.DEFINE_integer("n_best_size", 20, "Candidate spans kept per question (nbest_predictions.json).")
    define.DEFINE_integer("max_answer_length", 30, "Longest answer, in tokens.")
    define.DEFINE_bool("verbose_logging", False, "Log the de-tokenisation of every answer (debugging).")
    define.DEFINE_bool("version_2_with_negative", False, "SQuAD 2.0: questions may have no answer.")
    define.DEFINE_float("null_score_diff_threshold", 0.0, "v2: predict no answer when null odds exceed this.")
    define.DEFINE_bool("eval", False, "Score predictions with the official metrics (the predict file has answers).")
    define.DEFINE_bool("find_null_threshold", False, "v2: report the threshold that maximises F1 on the predict file "
                      "and apply it to predictions.json.")


def _validate(source):
    validate_common(source.max_positions)
    if FLAGS.do_train and not FLAGS.train_file:
        raise FlagError("If --do_train is True, then --train_file must be specified.")
    if FLAGS.do_predict and not FLAGS.predict_file:
        raise FlagError("If --do_predict is True, then --predict_file must be specified.")
    if FLAGS.max_seq_length <= FLAGS.max_query_length + 3:
        raise FlagError(f"The max_seq_length ({FLAGS.max_seq_length}) must be greater than max_query_length "
                        f"({FLAGS.max_query_length}) + 3.")
    if not 0 < FLAGS.doc_stride < FLAGS.max_seq_length:
        raise FlagError(f"--doc_stride={FLAGS.doc_stride} must be between 1 and --max_seq_length - 1 "
                        f"({FLAGS.max_seq_length - 1}).")
    if FLAGS.find_null_threshold and not FLAGS.version_2_with_negative:
        raise FlagError("--find_null_threshold needs --version_2_with_negative (SQuAD 2.0).")
    if (FLAGS.eval or FLAGS.find_null_threshold) and not FLAGS.do_predict:
        raise FlagError("--eval and --find_null_threshold score predictions: add --do_predict.")


def _features(path, tokenizer, is_training):
    start = time.perf_counter()
    examples, dataset = read_squad(path, is_training, FLAGS.version_2_with_negative)
    if is_training and FLAGS.max_train_examples:
        examples = examples[:FLAGS.max_train_examples]
    features = build_features(examples, tokenizer, FLAGS.max_seq_length, FLAGS.doc_stride, FLAGS.max_query_length,
                              is_training)
    logging.info("%s: %d questions -> %d features in %.1f s.", path, len(examples), len(features),
                 time.perf_counter() - start)
    return examples, dataset, features


def run():
    warn_ignored_tpu_flags()
    strategy = distribution.strategy()  # before TensorFlow touches a device
    source = resolve_model_source()
    _validate(source)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    keras.utils.set_random_seed(FLAGS.seed)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    with strategy.scope():
        model = BertSpanLabeler(build_encoder(source))
        prepare_model(model, source)

    global_step = 0
    if FLAGS.do_train:
        _, _, features = _features(FLAGS.train_file, tokenizer, is_training=True)
        split = features_to_split(features, FLAGS.max_seq_length)
        result = compile_and_train(model, split, "features", vocab_file=tokenizer.vocab_file)
        global_step = result["steps"]
        logging.info("Trained to step %d; %.2f features/s.", global_step, result["examples_per_s"])
        save_final(model, FLAGS.output_dir, tokenizer,
                   {"task": "squad_v2" if FLAGS.version_2_with_negative else "squad_v1.1",
                    "max_seq_length": FLAGS.max_seq_length, "doc_stride": FLAGS.doc_stride,
                    "max_query_length": FLAGS.max_query_length, "initialised_from": source.description},
                   FLAGS.adaptation)

    if FLAGS.do_predict:
        examples, dataset, features = _features(FLAGS.predict_file, tokenizer, is_training=False)
        split = features_to_split(features, FLAGS.max_seq_length)
        start = time.perf_counter()
        logits = trainer.predict(model, split, batch_size=FLAGS.predict_batch_size,
                                 max_seq_length=FLAGS.max_seq_length, jit_compile=FLAGS.jit_compile,
                                 bucket_by_length=FLAGS.bucket_by_length, per_token=True)
        seconds = time.perf_counter() - start
        logging.info("Predicted %d features in %.1f s (%.1f features/s).", len(features), seconds,
                     len(features) / seconds)
        predictions, nbest, null_odds = postprocess(
            examples, features, logits["start_logits"], logits["end_logits"], tokenizer.vocab,
            tokenizer.do_lower_case, FLAGS.n_best_size, FLAGS.max_answer_length, FLAGS.version_2_with_negative,
            FLAGS.null_score_diff_threshold)
        results = None
        if FLAGS.eval or FLAGS.find_null_threshold:
            results = evaluate(dataset, predictions, null_odds if FLAGS.version_2_with_negative else None,
                               version_2=FLAGS.version_2_with_negative)
            if FLAGS.find_null_threshold:
                threshold = results["best_f1_thresh"]
                predictions = {q: ("" if null_odds[q] > threshold else
                                   next((n["text"] for n in nbest[q] if n["text"]), "")) for q in predictions}
                results["null_score_diff_threshold"] = threshold
                logging.info("Best null threshold on %s: %.4f (F1 %.2f).", FLAGS.predict_file, threshold,
                             results["best_f1"])
            results["global_step"] = global_step
        write_text(output_path("predictions.json"), json.dumps(predictions, indent=2) + "\n")
        write_text(output_path("nbest_predictions.json"), json.dumps(nbest, indent=2) + "\n")
        if FLAGS.version_2_with_negative:
            write_text(output_path("null_odds.json"), json.dumps(null_odds, indent=2) + "\n")
        if results is not None:
            write_text(output_path("eval_results.json"), json.dumps(results, indent=2) + "\n")
            logging.info("***** Eval results *****\n%s", json.dumps(results, indent=2))
        for example in examples[:3]:
            print(f"  {example.question_text!r} -> {predictions[example.qas_id]!r}", flush=True)

    if FLAGS.export_dir and (FLAGS.do_train or FLAGS.do_export) and distribution.is_chief():
        from tfx_transfer.export import export_for_serving

        path = export_for_serving(model, FLAGS.export_dir, tokenizer, max_seq_length=FLAGS.max_seq_length,
                                  version=FLAGS.export_version, task="squad", doc_stride=FLAGS.doc_stride,
                                  max_query_length=FLAGS.max_query_length, max_answer_length=FLAGS.max_answer_length,
                                  version_2=FLAGS.version_2_with_negative,
                                  null_score_diff_threshold=FLAGS.null_score_diff_threshold)
        print(f"  exported for TF Serving: {path}", flush=True)
    return 0


def main(argv):
    return run_main(run, argv)
