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
from tfx_transfer.jobs.model_setup import (build_encoder, compile_and_train, head_loaded, prepare_model,
                                           resolve_model_source)
from tfx_transfer.jobs.outputs import output_path, save_final, write_text
from tfx_transfer.metrics.glue import compute
from tfx_transfer.models.classifier import BertClassifier
from tfx_transfer.models.feature_classifier import FEATURE_HEADS, FeatureClassifier
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
    define.DEFINE_enum("features", "pooled", ["pooled", "scalar_mix"], "Classifier input: the pooled [CLS] vector "
                       "(BERT) or a learned scalar mix of all layers (ELMo; use with --adaptation=feature_extraction).")
    define.DEFINE_enum("feature_head", "linear", list(FEATURE_HEADS), "--features=scalar_mix: a linear head on the "
                       "mean of the mixed token vectors, or a BiLSTM over them.")
    define.DEFINE_list("teacher_probabilities", None, "Knowledge distillation: files of a teacher's class "
                       "probabilities on the training examples (train_probabilities.tsv of a teacher run; several "
                       "files are averaged: an ensemble teacher).")
    define.DEFINE_float("distill_temperature", 2.0, "Distillation temperature T.")
    define.DEFINE_float("distill_alpha", 0.5, "Weight of the soft-target term (1 - alpha on the hard labels).")
    define.DEFINE_integer("student_layers", None, "Distil into a student with this many of the pretrained encoder's "
                          "layers (evenly spaced, DistilBERT-style initialisation).")
    define.DEFINE_list("auxiliary_tasks", None, "Multi-task fine-tuning: other tasks trained jointly on the same "
                       "encoder, each with its own head, as TASK:DATA_DIR (e.g. MRPC:glue_data/MRPC); each step "
                       "samples a task (--task_sampling). Not resumable.")
    define.DEFINE_enum("task_sampling", "proportional", ["proportional", "temperature", "uniform"],
                       "Multi-task: p(task) proportional to its size, to size^(1/T), or uniform.")
    define.DEFINE_float("sampling_temperature", 2.0, "Multi-task: T of --task_sampling=temperature.")
    define.DEFINE_bool("write_train_probabilities", False, "After training, write train_probabilities.tsv (class "
                       "probabilities on the training examples: a teacher for --teacher_probabilities).")


def _processor(checkpoint_labels=None):
    processor, data_dir = _find_processor(checkpoint_labels)
    processor.encoding_errors = FLAGS.encoding_errors
    return processor, data_dir


def _needs_data() -> bool:
    return FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict


def _find_processor(checkpoint_labels=None):
    """The task's processor and data directory. A csv task without --label_list takes the labels the checkpoint's
    producer recorded (Hugging Face id2label, a finished run's task.json); without either it is a regression."""
    if not FLAGS.task_name:
        raise FlagError(f"--task_name is required; known tasks: {', '.join(task_names())}.")
    if FLAGS.task_name.lower() == "csv":
        if _needs_data() and not (FLAGS.train_file or FLAGS.dev_file or FLAGS.test_file):
            raise FlagError("--task_name=csv needs --train_file, --dev_file and/or --test_file.")
        labels = FLAGS.label_list
        if labels is None and checkpoint_labels:
            labels = list(checkpoint_labels)
            logging.info("--task_name=csv: labels %s from the checkpoint (no --label_list).", labels)
        return csv_processor(FLAGS.train_file, FLAGS.dev_file, FLAGS.test_file, FLAGS.text_a_column,
                             FLAGS.text_b_column, FLAGS.label_column, labels, FLAGS.delimiter,
                             FLAGS.skip_header), None
    try:
        processor = get_processor(FLAGS.task_name)
    except ValueError as e:
        raise FlagError(f"--task_name={FLAGS.task_name}: {e}") from None
    if processor.name == "demo":
        from tfx_transfer.data.glue import DEMO_DIR

        return processor, FLAGS.data_dir or DEMO_DIR
    if not FLAGS.data_dir:
        if not _needs_data():  # --do_export alone: the task's labels and pairing, no data
            return processor, None
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


def _validate_schemes(processor):
    if FLAGS.features == "scalar_mix" and FLAGS.hub_module_handle and FLAGS.adaptation in ("full",
                                                                                          "feature_extraction"):
        raise FlagError("--features=scalar_mix needs every layer's output: use --adaptation=adapters with "
                        "--hub_module_handle, or a checkpoint.")
    if FLAGS.teacher_probabilities:
        if processor.is_regression:
            raise FlagError("--teacher_probabilities: distillation needs a classification task (soft targets).")
        if not 0 <= FLAGS.distill_alpha <= 1 or FLAGS.distill_temperature <= 0:
            raise FlagError(f"--distill_alpha={FLAGS.distill_alpha} must be in [0, 1] and --distill_temperature="
                            f"{FLAGS.distill_temperature} > 0.")
    if FLAGS.student_layers is not None and (FLAGS.student_layers < 1 or FLAGS.hub_module_handle):
        raise FlagError(f"--student_layers={FLAGS.student_layers}: needs a value >= 1 and a checkpoint (not a Hub "
                        "module).")


def _build_model(source, processor):
    """BertClassifier (pooled [CLS]) or FeatureClassifier (--features=scalar_mix), initialised from `source`;
    with --student_layers, the encoder keeps that many of the pretrained layers."""
    from tfx_transfer.adaptation.distillation import truncated_encoder

    num_outputs = 1 if processor.is_regression else len(processor.labels)
    # Head dropout = the encoder's hidden dropout (0.1 for BERT), as Hugging Face does.
    dropout = source.config.hidden_dropout_prob if source.config else 0.1

    def classifier(encoder):
        if FLAGS.features == "scalar_mix":
            return FeatureClassifier(encoder, num_outputs, head=FLAGS.feature_head, dropout=dropout)
        return BertClassifier(encoder, num_outputs, dropout=dropout)

    model = classifier(build_encoder(source))
    report = prepare_model(model, source, task_name=processor.name)
    if report is not None and head_loaded(model, report):
        _align_head_labels(model, source, processor)
    if FLAGS.student_layers is None:
        return model
    student, chosen = truncated_encoder(model.encoder, FLAGS.student_layers)
    logging.info("Student encoder: %d layers initialised from pretrained layers %s.", FLAGS.student_layers, chosen)
    model = classifier(student)
    from tfx_transfer.adaptation.strategies import apply_strategy
    from tfx_transfer.jobs.model_setup import strategy_options

    logging.info("%s", apply_strategy(model, FLAGS.adaptation, **strategy_options()))
    return model


def _align_head_labels(model, source, processor):
    """A head loaded from a fine-tuned checkpoint scores the producer's labels in the producer's order. When the
    producer recorded its label names and they are the task's in another order, the head's classes are reordered
    to the task's; names that differ are reported (the head's classes are then taken in order)."""
    from tfx_transfer.models.classifier import reorder_classes

    theirs, ours = source.labels, [str(label) for label in processor.labels or []]
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


def _distillation_targets(split):
    """The split with labels packed as [label, teacher probabilities...] and the distillation loss."""
    import dataclasses

    from tfx_transfer.adaptation.distillation import DistillationLoss, pack_targets
    from tfx_transfer.adaptation.ensembling import average_probabilities, read_probabilities

    try:
        teachers = [read_probabilities(path) for path in FLAGS.teacher_probabilities]
        probabilities = average_probabilities(teachers)
        if len(probabilities) != len(split):
            raise ValueError(f"{len(probabilities)} teacher rows for {len(split)} training examples (same "
                             "--task_name, data and --max_train_examples as the teacher run?)")
        targets = pack_targets(split.labels, probabilities)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--teacher_probabilities: {e}") from None
    logging.info("Distilling from %d teacher run(s): T=%g, alpha=%g.", len(teachers), FLAGS.distill_temperature,
                 FLAGS.distill_alpha)
    return dataclasses.replace(split, labels=targets), DistillationLoss(FLAGS.distill_temperature, FLAGS.distill_alpha)


_AUXILIARY = {}  # task name -> (model, processor, data_dir) of --auxiliary_tasks, for their dev metrics


def _auxiliary_processors():
    tasks = []
    for entry in FLAGS.auxiliary_tasks:
        name, _, data_dir = entry.partition(":")
        try:
            processor = get_processor(name)
        except ValueError as e:
            raise FlagError(f"--auxiliary_tasks={entry}: {e}") from None
        if processor.name == "demo":
            from tfx_transfer.data.glue import DEMO_DIR

            data_dir = data_dir or DEMO_DIR
        if not data_dir or not os.path.isdir(data_dir):
            raise FlagError(f"--auxiliary_tasks={entry}: give TASK:DATA_DIR with an existing directory.")
        tasks.append((processor, data_dir))
    return tasks


def _train_multitask(model, processor, train_split, loss, tokenizer, source):
    """--auxiliary_tasks: the target task and the auxiliary ones on one encoder, a task sampled per step
    (`adaptation.multitask`). Steps = all tasks' examples x epochs / batch size."""
    from tfx_transfer.adaptation.multitask import MultiTaskTrainer, TaskSampler, TaskSpec
    from tfx_transfer.jobs.model_setup import add_regularisers_from_flags, optimizer_from_flags

    if FLAGS.unfreezing != "none" or FLAGS.gradient_accumulation_steps > 1:
        raise FlagError("--auxiliary_tasks trains with its own loop: --unfreezing and --gradient_accumulation_steps "
                        "are not supported with it.")
    if model.distribute_strategy.num_replicas_in_sync > 1:
        raise FlagError("--auxiliary_tasks runs on one device (no --distribution_strategy).")
    specs = {processor.name: TaskSpec(model, loss, train_split)}
    for aux_processor, data_dir in _auxiliary_processors():
        if aux_processor.name in specs:
            raise FlagError(f"--auxiliary_tasks: {aux_processor.name} is given twice (or is the target task).")
        examples = aux_processor.train_examples(data_dir)
        if FLAGS.max_train_examples:
            examples = examples[:FLAGS.max_train_examples]
        split = encode_examples(examples, tokenizer, FLAGS.max_seq_length, aux_processor.labels)
        aux_model = BertClassifier(model.encoder, 1 if aux_processor.is_regression else len(aux_processor.labels),
                                   dropout=model.dropout if hasattr(model, "dropout") else 0.1,
                                   name=f"aux_{aux_processor.name.lower().replace('-', '_')}")
        specs[aux_processor.name] = TaskSpec(aux_model, _loss(aux_processor), split)
        _AUXILIARY[aux_processor.name] = (aux_model, aux_processor, data_dir)
    sizes = {name: len(spec.split) for name, spec in specs.items()}
    steps = trainer.total_train_steps(sum(sizes.values()), FLAGS.train_batch_size, FLAGS.num_train_epochs)
    sampler = TaskSampler(sizes, FLAGS.task_sampling, FLAGS.sampling_temperature, seed=FLAGS.seed)
    logging.info("Multi-task: %d steps of %d over %s; p(task) = %s.", steps, FLAGS.train_batch_size, sizes,
                 {k: round(v, 3) for k, v in sampler.probabilities.items()})
    add_regularisers_from_flags(model, train_split, tokenizer.vocab_file)
    model.compile(optimizer=optimizer_from_flags(model, steps), loss=loss)
    result = MultiTaskTrainer(specs, model.optimizer, sampler, seed=FLAGS.seed).train(
        steps, FLAGS.train_batch_size, FLAGS.max_seq_length, bucket_by_length=FLAGS.bucket_by_length)
    logging.info("Multi-task steps per task %s, mean loss %s.", result["steps_per_task"],
                 result["mean_loss_per_task"])
    return {"steps": steps, "resumed_from": 0, "seconds": result["seconds"],
            "examples_per_s": steps * FLAGS.train_batch_size / result["seconds"]}


def _predicted_scores(model, processor, split, batch_size):
    """Probabilities [N, C] (scores [N] for regression) of `model` on `split`, in file order."""
    outputs = trainer.predict(model, split, batch_size=batch_size, max_seq_length=FLAGS.max_seq_length,
                              jit_compile=FLAGS.jit_compile, bucket_by_length=FLAGS.bucket_by_length)
    return _scores(processor, outputs)


def _write_probabilities(model, processor, split, name):
    from tfx_transfer.adaptation.ensembling import write_probabilities

    write_probabilities(output_path(name), _predicted_scores(model, processor, split, FLAGS.eval_batch_size))


def evaluate(model, processor, split, name="eval", keep_scores=None):
    """`{name}_<metric>` and `{name}_loss` on `split`; the probabilities (or scores) go into `keep_scores[name]`
    when a dict is given."""
    scores = _predicted_scores(model, processor, split, FLAGS.eval_batch_size)
    if keep_scores is not None:
        keep_scores[name] = scores
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
    _AUXILIARY.clear()  # a previous in-process run's auxiliary tasks
    strategy = distribution.strategy()  # before TensorFlow touches a device
    source = resolve_model_source()
    processor, data_dir = _processor(source.labels)
    validate_common(source.max_positions, modes=("do_train", "do_eval", "do_predict", "do_export"))
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    keras.utils.set_random_seed(FLAGS.seed)
    tokenizer = BertTokenizer.from_settings(source.tokenizer)
    labels = processor.labels
    _validate_schemes(processor)
    with strategy.scope():
        model = _build_model(source, processor)


    def encode(examples):
        return encode_examples(examples, tokenizer, FLAGS.max_seq_length, labels)

    global_step = 0
    if FLAGS.do_train:
        examples = processor.train_examples(data_dir)
        if FLAGS.max_train_examples:
            examples = examples[:FLAGS.max_train_examples]
        train_split = encode(examples)
        loss = _loss(processor)
        if FLAGS.teacher_probabilities:
            train_split, loss = _distillation_targets(train_split)
        if FLAGS.auxiliary_tasks:
            result = _train_multitask(model, processor, train_split, loss, tokenizer, source)
        else:
            result = compile_and_train(model, train_split, "examples", loss=loss, vocab_file=tokenizer.vocab_file)
        global_step = result["steps"]
        logging.info("Trained to step %d (%s); %.1f examples/s.", global_step,
                     f"resumed from {result['resumed_from']}" if result["resumed_from"] else "from the start",
                     result["examples_per_s"])
        save_final(model, FLAGS.output_dir, tokenizer,
                   {"task": processor.name, "labels": labels, "metrics": list(processor.metrics),
                    "max_seq_length": FLAGS.max_seq_length, "initialised_from": source.description},
                   FLAGS.adaptation, labels)
        if FLAGS.write_train_probabilities:
            _write_probabilities(model, processor, train_split, "train_probabilities.tsv")

    if FLAGS.do_eval:
        dev_scores = {}
        results = evaluate(model, processor, encode(processor.dev_examples(data_dir)), keep_scores=dev_scores)
        for name, (aux_model, aux_processor, aux_dir) in _AUXILIARY.items():
            aux_split = encode_examples(aux_processor.dev_examples(aux_dir), tokenizer, FLAGS.max_seq_length,
                                        aux_processor.labels)
            results.update(evaluate(aux_model, aux_processor, aux_split, name=f"eval_{name}"))
        for name, examples in processor.extra_dev_examples(data_dir).items():
            results.update(evaluate(model, processor, encode(examples), name=f"eval_{name}"))
        results["global_step"] = global_step
        lines = [f"{key} = {value}" for key, value in results.items()]
        write_text(output_path("eval_results.txt"), "\n".join(lines) + "\n")
        if not processor.is_regression:
            from tfx_transfer.adaptation.ensembling import write_probabilities

            write_probabilities(output_path("eval_probabilities.tsv"), dev_scores["eval"])  # for ensembling
        logging.info("***** Eval results *****\n  %s", "\n  ".join(lines))

    if FLAGS.do_predict:
        test = processor.test_examples(data_dir)
        split = encode_examples(test, tokenizer, FLAGS.max_seq_length, None)
        scores = _predicted_scores(model, processor, split, FLAGS.predict_batch_size)
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
