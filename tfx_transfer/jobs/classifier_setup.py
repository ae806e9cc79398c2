"""run_classifier.py's task and model: the data processor, the classifier (pooled [CLS] or scalar mix, optionally a
truncated student), a producer's head aligned to the task's labels, and the checks of its schemes."""

from __future__ import annotations

import os

import keras
import numpy as np
from absl import logging

from tfx_transfer.adaptation.distillation import truncated_encoder
from tfx_transfer.adaptation.strategies import apply_strategy
from tfx_transfer.data.glue import DEMO_DIR, GENERIC_TASKS, csv_processor, get_processor, task_names
from tfx_transfer.jobs.adapter_setup import strategy_arguments
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.inference_precision import predicts_in_int8
from tfx_transfer.jobs.model_setup import build_encoder, head_dropout, head_loaded, prepare_model
from tfx_transfer.jobs.options import ClassifierOptions
from tfx_transfer.models.classifier import BertClassifier, reorder_classes
from tfx_transfer.models.feature_classifier import FeatureClassifier


def task_processor(options: ClassifierOptions, checkpoint_labels=None):
    """The task's processor and data directory. A csv task without --label_list takes the labels the checkpoint's
    producer recorded (Hugging Face id2label, a finished run's task.json); without either it is a regression."""
    processor, data_dir = _find_processor(options, checkpoint_labels)
    processor.encoding_errors, processor.empty_texts = options.encoding_errors, options.empty_texts
    return processor, data_dir


def _find_processor(o: ClassifierOptions, checkpoint_labels):
    if not o.task_name:
        raise FlagError(f"--task_name is required; known tasks: {', '.join(task_names())}.")
    generic = o.task_name.lower()
    if generic in GENERIC_TASKS:
        if o.needs_data and not (o.train_file or o.dev_file or o.test_file):
            raise FlagError(f"--task_name={generic} needs --train_file, --dev_file and/or --test_file.")
        labels = list(o.label_list) if o.label_list is not None else None
        if labels is None and checkpoint_labels:
            labels = list(checkpoint_labels)
            logging.info("--task_name=%s: labels %s from the checkpoint (no --label_list).", generic, labels)
        return csv_processor(o.train_file, o.dev_file, o.test_file, o.text_a_column, o.text_b_column, o.label_column,
                             labels, o.delimiter, o.skip_header, o.quotechar, name=generic), None
    try:
        processor = get_processor(o.task_name)
    except ValueError as e:
        raise FlagError(f"--task_name={o.task_name}: {e}") from e
    if processor.name == "demo":
        return processor, o.data_dir or DEMO_DIR
    if not o.data_dir:
        if not o.needs_data:  # --do_export alone: the task's labels and pairing, no data
            return processor, None
        raise FlagError(f"--data_dir is required for --task_name={o.task_name}: the directory of its .tsv files.")
    if not os.path.isdir(o.data_dir):
        raise FlagError(f"--data_dir={o.data_dir}: no such directory.")
    return processor, o.data_dir


def task_loss(processor):
    if processor.is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def scores_from_logits(processor, outputs):
    """Probabilities [N, C] for classification; scores [N] for regression."""
    if processor.is_regression:
        return outputs[:, 0]
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def validate_schemes(o: ClassifierOptions, processor):
    if o.features == "scalar_mix" and o.model.hub_module_handle and o.model.adaptation in ("full",
                                                                                        "feature_extraction"):
        raise FlagError("--features=scalar_mix needs every layer's output: use --adaptation=adapters with "
                        "--hub_module_handle, or a checkpoint.")
    if o.teacher_probabilities:
        if processor.is_regression:
            raise FlagError("--teacher_probabilities: distillation needs a classification task (soft targets).")
        if not 0 <= o.distill_alpha <= 1 or o.distill_temperature <= 0:
            raise FlagError(f"--distill_alpha={o.distill_alpha} must be in [0, 1] and --distill_temperature="
                            f"{o.distill_temperature} > 0.")
    if o.student_layers is not None and (o.student_layers < 1 or o.model.hub_module_handle):
        raise FlagError(f"--student_layers={o.student_layers}: needs a value >= 1 and a checkpoint (not a Hub "
                        "module).")


def build_model(o: ClassifierOptions, source, processor):
    """BertClassifier (pooled [CLS]) or FeatureClassifier (--features=scalar_mix), initialised from `source`;
    with --student_layers, the encoder keeps that many of the pretrained layers. Returns (model, load report or
    None for a Hub module)."""
    num_outputs = 1 if processor.is_regression else len(processor.labels)
    dropout = head_dropout(source)

    def classifier(encoder):
        if o.features == "scalar_mix":
            return FeatureClassifier(encoder, num_outputs, head=o.feature_head, dropout=dropout)
        return BertClassifier(encoder, num_outputs, dropout=dropout)

    model = classifier(build_encoder(source, o.model, o.distribution, needs_layers=predicts_in_int8(o)))
    report = prepare_model(model, source, o.model, will_train=o.do_train, task_name=processor.name)
    if report is not None and head_loaded(model, report):
        align_head_labels(model, source.labels, processor)
    if o.student_layers is None:
        return model, report
    student, chosen = truncated_encoder(model.encoder, o.student_layers)
    logging.info("Student encoder: %d layers initialised from pretrained layers %s.", o.student_layers, chosen)
    model = classifier(student)
    logging.info("%s", apply_strategy(model, o.model.adaptation, **strategy_arguments(o.model)))
    return model, report


def align_head_labels(model, checkpoint_labels, processor):
    """A head loaded from a fine-tuned checkpoint scores the producer's labels in the producer's order. When the
    producer recorded its label names and they are the task's in another order, the head's classes are reordered
    to the task's; names that differ are reported (the head's classes are then taken in order)."""
    theirs, ours = checkpoint_labels, [str(label) for label in processor.labels or []]
    if not theirs or not ours or processor.is_regression:
        return
    if list(theirs) == ours:
        logging.info("The checkpoint's head has the task's labels in the task's order: %s.", ours)
    elif sorted(theirs) == sorted(ours):
        reorder_classes(model, [list(theirs).index(label) for label in ours])
        logging.info("Reordered the checkpoint's head from its labels %s to the task's %s.", list(theirs), ours)
    else:
        logging.warning("The checkpoint's head was trained on the labels %s; this task's are %s. Its classes are "
                        "used in order (class i = %s).", list(theirs), ours,
                        ", ".join(f"{t} -> {o}" for t, o in zip(theirs, ours)))
