"""From flags to a model: where the pretrained weights, config, vocabulary and casing come from, and the adapter
configuration. Shared by run_classifier.py and run_squad.py."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import numpy as np
from absl import logging

from tfx_transfer.adaptation.adapter_config import ADAPTATION_PATH_PATTERN, AdapterConfig
from tfx_transfer.config import BertConfig
from tfx_transfer.jobs.flags import FLAGS, FlagError
from tfx_transfer.pretrained import DEFAULT_MODEL, resolve_pretrained
from tfx_transfer.text.casing import case_mismatch
from tfx_transfer.text.tokenizer_files import TokenizerSettings
from tfx_transfer.text.vocab import load_vocab


@dataclasses.dataclass
class ModelSource:
    """What the task model is initialised from. `hub_handle` is set for TF Hub modules (weights inside);
    `labels`: the checkpoint's head labels when its producer recorded them (Hugging Face id2label, a finished
    run's task.json)."""

    config: Optional[BertConfig]
    weights_path: str
    tokenizer: TokenizerSettings
    description: str
    hub_handle: Optional[str] = None
    labels: Optional[Tuple[str, ...]] = None

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings if self.config else 512


def _casing_flag() -> Optional[bool]:
    return FLAGS.do_lower_case if FLAGS["do_lower_case"].present else None


def _hub_source() -> ModelSource:
    """--hub_module_handle: a SavedModel with a BERT encoder interface. Its architecture is read when it is one we
    can unwrap (Model Garden, TF1 Hub, our exports); otherwise it can still run as a black box."""
    import tensorflow_hub as hub

    from tfx_transfer.checkpoints.saved_models import read_saved_model
    from tfx_transfer.encoders.hub_encoder import describe_interface, legacy_signature

    handle = FLAGS.hub_module_handle
    try:
        path = handle if os.path.exists(handle) else hub.resolve(handle)
        contents = read_saved_model(path)
        legacy_signature(contents.module, handle)  # raises for a SavedModel that is not a BERT encoder
    except ValueError as e:
        raise FlagError(f"--hub_module_handle={handle}: {e}") from e
    if contents.vocab_file is None:
        raise FlagError(f"--hub_module_handle={handle}: the module has no vocab_file asset, so its tokenisation is "
                        f"unknown; it offers {describe_interface(contents.module)}.")
    try:
        files = resolve_pretrained(path, vocab_file=FLAGS.vocab_file, do_lower_case=_casing_flag())
        config, tokenizer = files.config, files.tokenizer
    except ValueError:  # a black box of unknown layout: usable, but not unwrappable
        config = None
        lower = contents.do_lower_case if contents.do_lower_case is not None else FLAGS.do_lower_case
        tokenizer = TokenizerSettings(contents.vocab_file, lower if _casing_flag() is None else _casing_flag(),
                                      source=f"{path} (Hub module)")
    return ModelSource(config, path, tokenizer, f"--hub_module_handle={handle}", hub_handle=path)


def resolve_model_source() -> ModelSource:
    """--hub_module_handle, --init_checkpoint (+ --bert_config_file, --vocab_file) or --pretrained (default: the
    packaged MiniLM), in any layout `tfx_transfer.pretrained` reads."""
    named = [f for f in ("hub_module_handle", "init_checkpoint", "pretrained") if FLAGS[f].value]
    if len(named) > 1:
        raise FlagError(f"{' and '.join('--' + f for f in named)} all name the initial model; pass only one.")
    if FLAGS.hub_module_handle:
        return _hub_source()
    name = FLAGS.init_checkpoint or FLAGS.pretrained or DEFAULT_MODEL
    flag = "--init_checkpoint" if FLAGS.init_checkpoint else "--pretrained"
    for given, what in ((FLAGS.bert_config_file, "--bert_config_file"), (FLAGS.vocab_file, "--vocab_file")):
        if given and not os.path.isfile(given):
            raise FlagError(f"{what}={given}: file not found.")
    try:
        files = resolve_pretrained(name, config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
                                   do_lower_case=_casing_flag())
    except (FileNotFoundError, ValueError) as e:
        hint = ""
        if "no config file" in str(e) or "no vocabulary" in str(e):
            hint = " Pass --bert_config_file and --vocab_file for a directory that holds only checkpoints."
        raise FlagError(f"{flag}={name}: {e}{hint}") from e
    vocab = load_vocab(files.vocab_file)
    if len(vocab) > files.config.vocab_size:
        raise FlagError(f"{files.vocab_file} has {len(vocab)} tokens but the model ({files.config_file or name}) has "
                        f"vocab_size={files.config.vocab_size}: use the vocabulary the checkpoint was trained with.")
    if _casing_flag() is not None:
        problem = case_mismatch(files.do_lower_case, vocab, files.weights_path)
        if problem:
            raise FlagError(f"--do_lower_case={files.do_lower_case}: {problem}")
    logging.info("Tokenizer from %s: lower case %s, strip accents %s, words of up to %d characters.",
                 files.tokenizer.source, files.do_lower_case,
                 files.do_lower_case if files.tokenizer.strip_accents is None else files.tokenizer.strip_accents,
                 files.tokenizer.max_chars_per_word)
    return ModelSource(files.config, files.weights_path, files.tokenizer, f"{flag}={name}", labels=files.labels)


def adapter_config_from_flags() -> Optional[AdapterConfig]:
    kind = FLAGS.adapter_kind
    if FLAGS.adaptation == "adapters":
        kind = kind or "houlsby"
        if kind == "lora":
            raise FlagError("--adapter_kind=lora goes with --adaptation=lora.")
    elif FLAGS.adaptation == "lora":
        if kind not in (None, "lora"):
            raise FlagError(f"--adaptation=lora with --adapter_kind={kind}: use --adaptation=adapters for {kind}.")
        kind = "lora"
    if kind is None:
        return None
    if FLAGS.adapter_size < 1:
        raise FlagError(f"--adapter_size={FLAGS.adapter_size} must be >= 1.")
    if kind == "lora":
        return AdapterConfig(kind="lora", lora_rank=FLAGS.lora_rank, lora_alpha=2.0 * FLAGS.lora_rank)
    return AdapterConfig(kind=kind, size=FLAGS.adapter_size)


def strategy_options() -> dict:
    return {"k": FLAGS.top_k} if FLAGS.adaptation == "top_k" else {}


def build_encoder(source: ModelSource):
    """The encoder for `source`: a from-scratch `BertEncoder` (weights loaded later by `load_initial_weights`), a
    black-box `HubEncoder` (--adaptation full or feature_extraction), or a Hub module unwrapped by `from_hub`."""
    from tfx_transfer.encoders.bert_encoder import BertEncoder

    adapters = adapter_config_from_flags()
    if not source.hub_handle:
        return BertEncoder.from_bert_config(source.config, adapters=adapters)
    # A black-box module's variables are created by hub.load, outside any strategy scope: under a multi-replica
    # strategy the module is unwrapped instead (identical outputs, variables created by the strategy).
    distributed = FLAGS.distribution_strategy not in ("default", "one_device")
    if FLAGS.adaptation in ("full", "feature_extraction") and adapters is None and not distributed:
        from tfx_transfer.encoders.hub_encoder import HubEncoder

        return HubEncoder(source.hub_handle, trainable=FLAGS.adaptation == "full")
    encoder = BertEncoder.from_hub(source.hub_handle, adapters=adapters)
    logging.info("Unwrapped the Hub module into a transparent encoder:\n%s", encoder.load_report)
    return encoder


def prepare_model(model, source: ModelSource, task_name=None):
    """Loads the initial weights (unless they came with a Hub module) and applies the --adaptation strategy.
    `task_name`: the job's task; a previous run of another task (sequential adaptation) gives the encoder only.
    Returns the load report (None for a Hub module, whose weights came with it)."""
    from tfx_transfer.adaptation.strategies import apply_strategy
    from tfx_transfer.encoders.hub_encoder import HubEncoder

    report = load_initial_weights(model, source, task_name) if not source.hub_handle else None
    if isinstance(model.encoder, HubEncoder):
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        total = sum(int(np.prod(v.shape)) for v in model.weights)
        logging.info("Black-box Hub encoder (%s): training %d of %d parameters.",
                     "fine-tuned" if model.encoder.trainable else "frozen", trainable, total)
        return report
    logging.info("%s", apply_strategy(model, FLAGS.adaptation, **strategy_options()))
    return report


def previous_task(weights_path: str) -> Optional[str]:
    """The task of a finished run's `final/` directory (its task.json), or None for other checkpoints."""
    import json

    for directory in (weights_path, os.path.dirname(weights_path)):
        path = os.path.join(directory, "task.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f).get("task")
    return None


def head_loaded(model, report) -> bool:
    """Whether `report` initialised every variable of `model`'s head from the checkpoint."""
    import re

    head = [v.path for v in model.weights if any(re.fullmatch(p, v.path) for p in model.head_patterns)]
    loaded = {item.target for item in report.loaded}
    return bool(head) and all(path in loaded for path in head)


def load_initial_weights(model, source: ModelSource, task_name=None):
    """Loads `source` into the task model; adapters and the task head may stay newly initialised. A fine-tuned
    checkpoint's head loads when it is the model's kind of head with the same shape (a producer's classifier
    with as many labels, a QA head), else it is reported as discarded. A previous run of another task (sequential
    adaptation, Phang et al. 2018) loads its encoder; its head is discarded."""
    from tfx_transfer.checkpoints.assignment_map import AssignmentMap
    from tfx_transfer.checkpoints.loader import load_checkpoint

    head_patterns = list(model.head_patterns)
    user_map = AssignmentMap.from_json_file(FLAGS.assignment_map) if FLAGS.assignment_map else None
    earlier = previous_task(source.weights_path)
    if task_name and earlier and earlier != task_name and head_patterns:
        logging.info("Sequential adaptation: %s is a %s run; its encoder is loaded, its head is not (a new %s head).",
                     source.weights_path, earlier, task_name)
        new_head = AssignmentMap(discard=head_patterns, name=f"new {task_name} head")
        user_map = new_head if user_map is None else new_head.then(user_map)
    report = load_checkpoint(model, source.weights_path, assignment_map=user_map,
                             allow_missing=[ADAPTATION_PATH_PATTERN, *head_patterns],
                             heads=model.loads_producer_heads)
    logging.info("Initialised from %s\n%s", source.description, report)
    if head_patterns and head_loaded(model, report):
        logging.info("The task head comes from the checkpoint (%s).", source.description)
    elif head_patterns:
        notes = sorted({u.note for u in report.unused_in_checkpoint if u.note})
        if not FLAGS.do_train:
            logging.warning("The task head is newly initialised (%s) and --do_train is off: evaluation, predictions "
                            "and exports will come from an untrained head.",
                            "; ".join(notes) if notes else "the checkpoint has none")
        elif notes:
            logging.info("The checkpoint's task head is not used: %s.", "; ".join(notes))
    return report


def compile_and_train(model, split, unit: str, loss=None, vocab_file=None) -> dict:
    """The --do_train step both scripts share: AdamW with the flags' schedule, clipping, accumulation and
    per-variable rates for the flags' step count, the regularisers and auxiliary losses the flags ask for,
    compiled under the model's distribution strategy, then `trainer.train` (resumable, checkpoints in
    --output_dir/checkpoints) with the unfreezing callback. `loss`: None for models with a built-in loss (the span
    labeler). `vocab_file`: needed by --ewc and --aux_mlm_weight. Returns `trainer.train`'s result."""
    from tfx_transfer.jobs import trainer
    from tfx_transfer.jobs.outputs import checkpoint_dir, output_path

    steps = trainer.total_train_steps(len(split), FLAGS.train_batch_size, FLAGS.num_train_epochs)
    accumulation = FLAGS.gradient_accumulation_steps
    updates = max(1, steps // accumulation)
    logging.info("Training on %d %s: %d steps of %d, %.1f epochs%s.", len(split), unit, steps, FLAGS.train_batch_size,
                 FLAGS.num_train_epochs, f", {updates} updates of {accumulation} accumulated batches"
                 if accumulation > 1 else "")
    callbacks = []
    with model.distribute_strategy.scope():
        add_regularisers_from_flags(model, split, vocab_file)
        model.compile(optimizer=optimizer_from_flags(model, updates, accumulation, FLAGS.unfreezing != "none"),
                      loss=loss, jit_compile=FLAGS.jit_compile, run_eagerly=FLAGS.run_eagerly)
    if FLAGS.unfreezing != "none":
        callbacks.append(_unfreezing_callback(model, updates, len(split)))
    return trainer.train(model, split, epochs=FLAGS.num_train_epochs, batch_size=FLAGS.train_batch_size,
                         max_seq_length=FLAGS.max_seq_length, seed=FLAGS.seed, checkpoint_dir=checkpoint_dir(),
                         save_every_steps=FLAGS.save_checkpoints_steps, bucket_by_length=FLAGS.bucket_by_length,
                         log_dir=output_path("logs"), callbacks=callbacks)


def optimizer_from_flags(model, updates: int, accumulation: int = 1, per_variable_rates: bool = False):
    """AdamW for `updates` optimizer updates with the flags' learning rate, schedule, warmup, weight decay (off
    for --l2sp unless --weight_decay is given: L2-SP replaces the pull toward 0), clipping and layer-wise decay."""
    from tfx_transfer.adaptation.optimizers import create_optimizer

    weight_decay = FLAGS.weight_decay
    if FLAGS.l2sp and not FLAGS["weight_decay"].present:
        weight_decay = 0.0
        logging.info("--l2sp: weight decay toward 0 is off (pass --weight_decay to keep it).")
    return create_optimizer(FLAGS.learning_rate, updates, int(updates * FLAGS.warmup_proportion),
                            weight_decay=weight_decay, epsilon=FLAGS.adam_epsilon,
                            epsilon_mode=FLAGS.adam_epsilon_mode,
                            layerwise_lr_decay=FLAGS.layerwise_lr_decay, model=model,
                            schedule=FLAGS.lr_schedule, stlr_ratio=FLAGS.stlr_ratio, global_clipnorm=FLAGS.clip_norm,
                            gradient_accumulation_steps=accumulation, per_variable_rates=per_variable_rates)


def add_regularisers_from_flags(model, split, vocab_file):
    """--l2sp, --ewc, --aux_mlm_weight: anchored at the weights as loaded (before any training checkpoint is
    restored, so a resumed run anchors at the same pretrained values)."""
    from tfx_transfer.adaptation import multitask, regularizers

    vocab = load_vocab(vocab_file) if vocab_file and (FLAGS.ewc or FLAGS.aux_mlm_weight) else None
    if FLAGS.l2sp:
        anchors = regularizers.apply_l2sp(model, FLAGS.l2sp)
        logging.info("L2-SP (alpha %g) on %d pretrained variables.", FLAGS.l2sp, len(anchors))
    if FLAGS.ewc:
        fisher = multitask.ewc_fisher_from_mlm(model, split, vocab, num_examples=FLAGS.ewc_examples,
                                               head_steps=FLAGS.ewc_head_steps, max_seq_length=FLAGS.max_seq_length,
                                               seed=FLAGS.seed)
        regularizers.apply_ewc(model, fisher, FLAGS.ewc)
        logging.info("EWC (lambda %g): Fisher from masked-LM on %d training texts; mean %.3g, max %.3g.", FLAGS.ewc,
                     FLAGS.ewc_examples, np.mean([f.mean() for f in fisher.values()]),
                     max(f.max() for f in fisher.values()))
    if FLAGS.aux_mlm_weight:
        multitask.add_auxiliary_mlm(model, vocab, weight=FLAGS.aux_mlm_weight)
        logging.info("Auxiliary masked-LM, weight %g against the task loss.", FLAGS.aux_mlm_weight)


def _unfreezing_callback(model, updates: int, num_examples: int):
    from tfx_transfer.adaptation.unfreezing import UnfreezingCallback, unfreezing_plan
    from tfx_transfer.checkpoints.writers import find_encoder

    per_epoch = num_examples / (FLAGS.train_batch_size * FLAGS.gradient_accumulation_steps)
    head_epochs, frozen_embedding_epochs = (float(e) for e in FLAGS.sequential_unfreezing_epochs)
    plan = unfreezing_plan(FLAGS.unfreezing, find_encoder(model).bert_config.num_hidden_layers, updates,
                           interval=FLAGS.unfreezing_interval or None,
                           sequential_steps=(int(head_epochs * per_epoch), int(frozen_embedding_epochs * per_epoch)))
    logging.info("Unfreezing (%s): %s.", FLAGS.unfreezing,
                 "; ".join(f"from update {p.start_step}: {p.description}" for p in plan))
    return UnfreezingCallback(plan)
