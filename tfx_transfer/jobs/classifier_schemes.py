"""run_classifier.py's training schemes with their own data: knowledge distillation from a teacher's probability
files (--teacher_probabilities) and multi-task fine-tuning with other tasks (--auxiliary_tasks)."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

from absl import logging

from tfx_transfer.adaptation.distillation import DistillationLoss, pack_targets
from tfx_transfer.adaptation.multitask import MultiTaskTrainer, TaskSampler, TaskSpec
from tfx_transfer.data.pipeline import encode_examples
from tfx_transfer.jobs import trainer
from tfx_transfer.jobs.classifier_data import AuxiliaryTask
from tfx_transfer.jobs.classifier_setup import task_loss
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import ClassifierOptions
from tfx_transfer.jobs.training import add_regularisers, optimizer
from tfx_transfer.models.classifier import BertClassifier


def distillation_targets(o: ClassifierOptions, split, probabilities):
    """The split with labels packed as [label, teacher probabilities...] and the distillation loss (`probabilities`:
    the teachers' average, read and checked with the other inputs)."""
    logging.info("Distilling from %d teacher run(s): T=%g, alpha=%g.", len(o.teacher_probabilities),
                 o.distill_temperature, o.distill_alpha)
    targets = pack_targets(split.labels, probabilities)
    return dataclasses.replace(split, labels=targets), DistillationLoss(o.distill_temperature, o.distill_alpha)


AuxiliaryTasks = Dict[str, Tuple[object, object, list]]  # task name -> (its model, processor, dev examples)


def train_multitask(o: ClassifierOptions, model, processor, train_split, loss, tokenizer,
                    tasks: List[AuxiliaryTask]) -> Tuple[dict, AuxiliaryTasks]:
    """--auxiliary_tasks: the target task and the auxiliary ones (`tasks`, read with the other inputs) on one
    encoder, a task sampled per step (`adaptation.multitask`). Steps = all tasks' examples x epochs / batch size.
    Returns the training result and the auxiliary tasks (for their dev metrics)."""
    training = o.training
    if training.unfreezing != "none" or training.gradient_accumulation_steps > 1:
        raise FlagError("--auxiliary_tasks trains with its own loop: --unfreezing and --gradient_accumulation_steps "
                        "are not supported with it.")
    if model.distribute_strategy.num_replicas_in_sync > 1:
        raise FlagError("--auxiliary_tasks runs on one device (no --distribution_strategy).")
    specs = {processor.name: TaskSpec(model, loss, train_split)}
    auxiliary: AuxiliaryTasks = {}
    for task in tasks:
        aux_processor = task.processor
        split = encode_examples(task.train, tokenizer, o.max_seq_length, aux_processor.labels)
        aux_model = BertClassifier(model.encoder, 1 if aux_processor.is_regression else len(aux_processor.labels),
                                   dropout=model.dropout if hasattr(model, "dropout") else 0.1,
                                   name=f"aux_{aux_processor.name.lower().replace('-', '_')}")
        specs[aux_processor.name] = TaskSpec(aux_model, task_loss(aux_processor), split)
        auxiliary[aux_processor.name] = (aux_model, aux_processor, task.dev)
    sizes = {name: len(spec.split) for name, spec in specs.items()}
    steps = trainer.total_train_steps(sum(sizes.values()), training.train_batch_size, training.num_train_epochs)
    sampler = TaskSampler(sizes, o.task_sampling, o.sampling_temperature, seed=training.seed)
    logging.info("Multi-task: %d steps of %d over %s; p(task) = %s.", steps, training.train_batch_size, sizes,
                 {k: round(v, 3) for k, v in sampler.probabilities.items()})
    add_regularisers(model, train_split, training, o.max_seq_length, tokenizer.vocab_file)
    model.compile(optimizer=optimizer(model, training, steps), loss=loss)
    result = MultiTaskTrainer(specs, model.optimizer, sampler, seed=training.seed).train(
        steps, training.train_batch_size, o.max_seq_length, padding=training.batch_padding)
    logging.info("Multi-task steps per task %s, mean loss %s.", result["steps_per_task"],
                 result["mean_loss_per_task"])
    return ({"steps": steps, "resumed_from": 0, "seconds": result["seconds"],
             "examples_per_s": steps * training.train_batch_size / result["seconds"]}, auxiliary)
