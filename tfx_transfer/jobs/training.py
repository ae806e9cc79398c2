"""The --do_train step both scripts share: optimizer, regularisers and auxiliary losses, unfreezing, then the
resumable `trainer.train` loop, all from `TrainingOptions`."""

from __future__ import annotations

import numpy as np
from absl import logging

from tfx_transfer.adaptation import multitask, regularizers
from tfx_transfer.adaptation.optimizers import create_optimizer
from tfx_transfer.adaptation.unfreezing import UnfreezingCallback, unfreezing_plan
from tfx_transfer.encoders.bert_encoder import find_encoder
from tfx_transfer.jobs import trainer
from tfx_transfer.jobs.options import TrainingOptions
from tfx_transfer.jobs.outputs import checkpoint_dir, output_path
from tfx_transfer.text.vocab import load_vocab


def compile_and_train(model, split, unit: str, options: TrainingOptions, max_seq_length: int, output_dir: str,
                      loss=None, vocab_file=None, evaluation=None, batch_transform=None) -> dict:
    """AdamW with the options' schedule, clipping, accumulation and per-variable rates for the options' step count,
    the regularisers and auxiliary losses they ask for, compiled under the model's distribution strategy, then
    `trainer.train` (resumable, checkpoints in output_dir/checkpoints) with the unfreezing callback.

    Args:
        unit: what the split holds, for the log ("examples", "features").
        loss: None for models with a built-in loss (the span labeler).
        vocab_file: needed by --ewc and --aux_mlm_weight.
        evaluation: an `EvaluationSchedule` (evaluation during training, the best model, early stopping), or None.
        batch_transform: see `trainer.train` (masked-LM targets made in the input pipeline).

    Returns:
        `trainer.train`'s result.
    """
    steps = trainer.total_train_steps(len(split), options.train_batch_size, options.num_train_epochs)
    accumulation = options.gradient_accumulation_steps
    updates = max(1, steps // accumulation)
    logging.info("Training on %d %s: %d steps of %d, %.1f epochs%s.", len(split), unit, steps,
                 options.train_batch_size, options.num_train_epochs,
                 f", {updates} updates of {accumulation} accumulated batches" if accumulation > 1 else "")
    callbacks = []
    with model.distribute_strategy.scope():
        add_regularisers(model, split, options, max_seq_length, vocab_file)
        model.compile(optimizer=optimizer(model, options, updates, per_variable_rates=options.unfreezing != "none"),
                      loss=loss, jit_compile=options.jit_compile, run_eagerly=options.run_eagerly)
    if options.unfreezing != "none":
        callbacks.append(unfreezing_callback(model, options, updates, len(split)))
    return trainer.train(model, split, epochs=options.num_train_epochs, batch_size=options.train_batch_size,
                         max_seq_length=max_seq_length, seed=options.seed, checkpoint_dir=checkpoint_dir(output_dir),
                         save_every_steps=options.save_checkpoints_steps, padding=options.batch_padding,
                         log_dir=output_path(output_dir, "logs"), callbacks=callbacks, evaluation=evaluation,
                         batch_transform=batch_transform)


def optimizer(model, options: TrainingOptions, updates: int, per_variable_rates: bool = False):
    """AdamW for `updates` optimizer updates with the options' learning rate, schedule, warmup, weight decay (off
    for --l2sp unless --weight_decay is given: L2-SP replaces the pull toward 0), clipping and layer-wise decay."""
    if options.l2sp and options.weight_decay is None:
        logging.info("--l2sp: weight decay toward 0 is off (pass --weight_decay to keep it).")
    return create_optimizer(options.learning_rate, updates, int(updates * options.warmup_proportion),
                            weight_decay=options.decoupled_weight_decay, epsilon=options.adam_epsilon,
                            epsilon_mode=options.adam_epsilon_mode, layerwise_lr_decay=options.layerwise_lr_decay,
                            model=model, schedule=options.lr_schedule, stlr_ratio=options.stlr_ratio,
                            global_clipnorm=options.clip_norm,
                            gradient_accumulation_steps=options.gradient_accumulation_steps,
                            per_variable_rates=per_variable_rates)


def add_regularisers(model, split, options: TrainingOptions, max_seq_length: int, vocab_file=None):
    """--l2sp, --ewc, --aux_mlm_weight: anchored at the weights as loaded (before any training checkpoint is
    restored, so a resumed run anchors at the same pretrained values)."""
    vocab = load_vocab(vocab_file) if vocab_file and (options.ewc or options.aux_mlm_weight) else None
    if options.l2sp:
        anchors = regularizers.apply_l2sp(model, options.l2sp)
        logging.info("L2-SP (alpha %g) on %d pretrained variables.", options.l2sp, len(anchors))
    if options.ewc:
        fisher = multitask.ewc_fisher_from_mlm(model, split, vocab, num_examples=options.ewc_examples,
                                               head_steps=options.ewc_head_steps, max_seq_length=max_seq_length,
                                               seed=options.seed)
        regularizers.apply_ewc(model, fisher, options.ewc)
        logging.info("EWC (lambda %g): Fisher from masked-LM on %d training texts; mean %.3g, max %.3g.", options.ewc,
                     options.ewc_examples, np.mean([f.mean() for f in fisher.values()]),
                     max(f.max() for f in fisher.values()))
    if options.aux_mlm_weight:
        multitask.add_auxiliary_mlm(model, vocab, weight=options.aux_mlm_weight)
        logging.info("Auxiliary masked-LM, weight %g against the task loss.", options.aux_mlm_weight)


def unfreezing_callback(model, options: TrainingOptions, updates: int, num_examples: int):
    per_epoch = num_examples / (options.train_batch_size * options.gradient_accumulation_steps)
    head_epochs, frozen_embedding_epochs = options.sequential_unfreezing_epochs
    plan = unfreezing_plan(options.unfreezing, find_encoder(model).bert_config.num_hidden_layers, updates,
                           interval=options.unfreezing_interval or None,
                           sequential_steps=(int(head_epochs * per_epoch), int(frozen_embedding_epochs * per_epoch)))
    logging.info("Unfreezing (%s): %s.", options.unfreezing,
                 "; ".join(f"from update {p.start_step}: {p.description}" for p in plan))
    return UnfreezingCallback(plan)
