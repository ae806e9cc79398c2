"""The run_ner.py job: token classification (NER, part-of-speech tagging, chunking) on CoNLL / CoNLL-U files.

    python run_ner.py --train_file=train.txt --dev_file=dev.txt --do_train --do_eval --output_dir=/tmp/ner \\
        [--init_checkpoint=... | --pretrained=DIR] [--adaptation=adapters --adapter_size=64 --learning_rate=1e-3]

Every adaptation, optimisation, resumption and distribution flag of run_classifier.py works here (they are the
shared flags). Outputs in --output_dir:
  eval_results.txt     `key = value`: eval_accuracy (tokens = words), and for BIO / IOB1 / IOBES labels
                       eval_precision / eval_recall / eval_f1 (entities, conlleval / seqeval), eval_f1_<TYPE> per type,
                       eval_loss, global_step
  eval_predictions.txt, test_predictions.txt   CoNLL: word, gold label (eval), predicted label; blank line between
                       sentences
  final/               model.keras, config.json, vocab.txt, task.json (labels), adapter.safetensors (when only part of
                       the model trained): a valid --init_checkpoint
  checkpoints/, logs/  resumable training state, TensorBoard scalars
With --export_dir (after training, or --do_export of an --init_checkpoint): <export_dir>/<version>/, a TF Serving
SavedModel taking raw text and returning each word's label, probability and character offsets
(export/tagger_module.py).
With --probe_layers (and --adaptation=feature_extraction): a linear tagger per encoder layer, scored per layer in
probe_results.tsv / .png (jobs/probing.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import List, Optional

import keras
from absl import logging

from tfx_transfer.data.conll import ConllFormatError, label_list as labels_of, read_tagged
from tfx_transfer.data.tagging import TaggedSplit, decode_tagged, encode_tagged
from tfx_transfer.jobs import distribution, flags, trainer
from tfx_transfer.jobs.best_model import evaluation_schedule
from tfx_transfer.jobs.cli import run_main
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.inference_precision import predicts_in_int8, validate_inference_dtype
from tfx_transfer.jobs.model_card import ModelCard
from tfx_transfer.jobs.model_setup import (build_encoder, freeze_unused_pooler, head_dropout, prepare_model,
                                           resolve_model_source)
from tfx_transfer.jobs.options import NerOptions
from tfx_transfer.jobs.probing import check_probing, run_probes
from tfx_transfer.jobs.outputs import checkpoint_dir, export_and_plot, finish_training, output_path, write_text
from tfx_transfer.jobs.run_lock import OutputDirLock
from tfx_transfer.jobs.training import compile_and_train
from tfx_transfer.metrics.tagging import entity_scores, is_chunk_tagging, token_accuracy
from tfx_transfer.models.token_classifier import BertTokenClassifier, token_loss
from tfx_transfer.text.tokenizer import BertTokenizer


def define_flags():
    """run_ner.py's absl flags (see jobs/flags.py)."""
    flags.define_ner_flags()


def _label_column(o: NerOptions, path):
    """--label_column as read_tagged takes it: an int for CoNLL, upos / xpos (or 3 / 4) for CoNLL-U."""
    value = o.label_column.strip()
    try:
        return int(value)
    except ValueError:
        if path.lower().endswith(".conllu") and value.lower() in ("upos", "xpos"):
            return value.lower()
        raise FlagError(f"--label_column={value!r}: a column number (CoNLL), or upos / xpos for a .conllu file.")


def _read(o: NerOptions, path, role, labelled=True):
    if not path:
        raise FlagError(f"--{role}_file is needed with --do_{'train' if role == 'train' else role}.")
    try:
        sentences = read_tagged(path, o.word_column, _label_column(o, path) if labelled else None, set_name=role)
    except (ConllFormatError, FileNotFoundError) as error:
        raise FlagError(str(error)) from None
    if not sentences:
        raise FlagError(f"--{role}_file={path}: no sentences in it.")
    if role == "train" and o.training.max_train_examples:
        sentences = sentences[:o.training.max_train_examples]
    return sentences


@dataclasses.dataclass
class _Data:
    """Every input read and checked before the model is built."""

    labels: List[str]
    train: Optional[list]
    dev: Optional[list]
    test: Optional[list]


def _read_all(o: NerOptions) -> _Data:
    train = _read(o, o.train_file, "train") if o.do_train else None
    dev = _read(o, o.dev_file, "dev") if o.do_eval else None
    test = _read(o, o.test_file, "test", labelled=False) if o.do_predict else None
    if o.label_list:
        labels = list(o.label_list)
    elif train is not None:
        labels = labels_of(train)
    else:
        labels = None  # from the model (final/task.json), decided in run()
    for role, sentences in (("train", train), ("dev", dev)):
        unknown = sorted({label for s in sentences or () for label in s.labels} - set(labels or ()))
        if labels is not None and unknown:
            raise FlagError(f"--{role}_file has labels not in the label list: {unknown[:10]} (label list: "
                            f"{labels[:20]}).")
    return _Data(labels, train, dev, test)


def _logits(o: NerOptions, model, split: TaggedSplit, batch_size):
    return trainer.predict(model, split.as_encoded(), batch_size=batch_size, max_seq_length=o.max_seq_length,
                           jit_compile=o.training.jit_compile, padding=o.training.batch_padding, per_token=True,
                           int8=predicts_in_int8(o))


def evaluate(o: NerOptions, model, split: TaggedSplit):
    """({eval_* metrics}, predicted labels per sentence) of `model` on the labelled `split`."""
    return tagging_results(split, _logits(o, model, split, o.eval_batch_size))


def tagging_results(split: TaggedSplit, logits):
    """({eval_* metrics}, predicted labels per sentence) from per-token logits [N, W, C] of the labelled `split`."""
    predicted = decode_tagged(split, logits)
    gold = [s.labels for s in split.sentences]
    results = {"eval_accuracy": token_accuracy(gold, predicted)}
    if is_chunk_tagging(split.label_list):
        scores = entity_scores(gold, predicted)
        results.update(eval_precision=scores["precision"], eval_recall=scores["recall"], eval_f1=scores["f1"])
        results.update({f"eval_f1_{t}": s["f1"] for t, s in scores["per_type"].items()})
    results["eval_loss"] = float(token_loss(split.label_ids, logits))  # the training loss, on first sub-tokens
    return results, predicted


def _write_predictions(path, sentences, predicted, with_gold):
    lines = []
    for sentence, labels in zip(sentences, predicted):
        for i, (word, label) in enumerate(zip(sentence.words, labels)):
            lines.append(f"{word} {sentence.labels[i]} {label}" if with_gold else f"{word} {label}")
        lines.append("")
    write_text(path, "\n".join(lines) + "\n")


def _keep_best(o: NerOptions, chunked: bool):
    if not o.training.evaluates_during_training:
        return None
    if not o.do_eval:
        raise FlagError("--eval_every_steps / --eval_every_epoch evaluate on --dev_file: add --do_eval.")
    names = ["eval_accuracy", "eval_loss"] + (["eval_f1", "eval_precision", "eval_recall"] if chunked else [])
    return flags.validate_keep_best(o, names, default="eval_f1" if chunked else "eval_accuracy")


def run(o: NerOptions):
    """Runs the job; every input is read and checked before the model is built, and a live run into the same
    --output_dir is refused."""
    flags.warn_ignored_tpu_flags(o)
    strategy = distribution.strategy(o.distribution)  # before TensorFlow touches a device
    source = resolve_model_source(o.model)
    flags.validate_common(o, source.max_positions, modes=("do_train", "do_eval", "do_predict", "do_export"))
    validate_inference_dtype(o)
    data = _read_all(o)
    if data.labels is None:
        data.labels = list(source.labels or ())
        if not data.labels:
            raise FlagError("No label list: give --label_list, or --do_train with a --train_file, or a fine-tuned "
                            "tagger (a run's final/) as --init_checkpoint.")
    keep_best = _keep_best(o, is_chunk_tagging(data.labels))
    probed = check_probing(o, source)
    out = o.output.output_dir
    os.makedirs(out, exist_ok=True)
    with OutputDirLock(out) if distribution.is_chief() else contextlib.nullcontext():
        if probed:
            return _probe(o, strategy, source, data, probed)
        return _run(o, strategy, source, data, keep_best)


def _probe(o: NerOptions, strategy, source, data: _Data, layers):
    """--probe_layers: a linear tagger per layer on frozen features (jobs/probing.py)."""
    keras.utils.set_random_seed(o.training.seed)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    train = encode_tagged(data.train, tokenizer, o.max_seq_length, data.labels, label_all_tokens=o.label_all_tokens)
    dev = encode_tagged(data.dev, tokenizer, o.max_seq_length, data.labels)
    run_probes(o, strategy, source, layers, len(data.labels), True, train.as_encoded(), dev.as_encoded(),
               lambda logits: tagging_results(dev, logits)[0], "windows")
    return 0


def _run(o: NerOptions, strategy, source, data: _Data, keep_best):
    out = o.output.output_dir
    keras.utils.set_random_seed(o.training.seed)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    labels = data.labels
    with strategy.scope():
        encoder = build_encoder(source, o.model, o.distribution, needs_layers=predicts_in_int8(o))
        model = BertTokenClassifier(encoder, len(labels), dropout=head_dropout(source))
        report = prepare_model(model, source, o.model, will_train=o.do_train, task_name="token_classification")
        freeze_unused_pooler(model)
    card = ModelCard("run_ner.py", o)
    card.base_model(source)
    for role, path, sentences in (("train", o.train_file, data.train), ("dev", o.dev_file, data.dev),
                                  ("test", o.test_file, data.test)):
        if sentences is not None:
            card.data_file(role, path, len(sentences))
    card.load_report = str(report) if report is not None else None
    task = {"task": "token_classification", "labels": labels, "max_seq_length": o.max_seq_length,
            "label_all_tokens": o.label_all_tokens, "initialised_from": source.description}  # final/task.json
    card.task = task

    def encode(sentences, training=False):  # evaluation scores first sub-tokens only
        return encode_tagged(sentences, tokenizer, o.max_seq_length, labels,
                             label_all_tokens=o.label_all_tokens and training)

    encoding_start = time.perf_counter()
    dev_split = encode(data.dev) if o.do_eval else None
    dev_encoding_seconds = time.perf_counter() - encoding_start
    global_step, final_dir = 0, None
    if o.do_train:
        train_split = encode(data.train, training=True)
        logging.info("%s: %d sentences -> %d windows of <= %d tokens.", o.train_file, len(data.train),
                     len(train_split), o.max_seq_length)
        evaluation = None
        if keep_best:
            evaluation = evaluation_schedule(lambda trained: evaluate(o, trained, dev_split)[0], keep_best,
                                             o.training, checkpoint_dir(out), write=distribution.is_chief())
        result = compile_and_train(model, train_split.as_encoded(), "windows", o.training, o.max_seq_length, out,
                                   vocab_file=tokenizer.vocab_file, evaluation=evaluation)
        global_step = result["steps"]
        logging.info("Trained to step %d; %.1f windows/s.", global_step, result["examples_per_s"])
        final_dir = finish_training(model, result, evaluation, card, task, out, tokenizer, o.model.adaptation, labels)

    if o.do_eval:
        evaluation_start = time.perf_counter()
        results, predicted = evaluate(o, model, dev_split)
        card.record_evaluation(len(data.dev), dev_encoding_seconds + time.perf_counter() - evaluation_start)
        results["global_step"] = global_step
        lines = [f"{key} = {value}" for key, value in results.items()]
        write_text(output_path(out, "eval_results.txt"), "\n".join(lines) + "\n")
        _write_predictions(output_path(out, "eval_predictions.txt"), data.dev, predicted, with_gold=True)
        logging.info("***** Eval results *****\n  %s", "\n  ".join(lines))
        card.metrics = results
        if final_dir:
            card.write(final_dir)

    if o.do_predict:
        split = encode(data.test)
        predicted = decode_tagged(split, _logits(o, model, split, o.predict_batch_size))
        _write_predictions(output_path(out, "test_predictions.txt"), data.test, predicted, with_gold=False)
        logging.info("Wrote test_predictions.txt (%d sentences).", len(data.test))
        for sentence, tags in list(zip(data.test, predicted))[:2]:
            print("  " + " ".join(f"{w}/{t}" for w, t in zip(sentence.words, tags)), flush=True)
    export_and_plot(o, model, card, tokenizer, labels=labels, task="tagger")
    return 0


def main(argv):
    """absl entry point: the flags parsed once into `NerOptions`; one-line errors and exit code 2 for bad input."""
    return run_main(lambda: run(flags.parse_ner_options()), argv)
