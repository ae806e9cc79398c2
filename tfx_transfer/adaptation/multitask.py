"""Getting more signal: multi-task fine-tuning on one shared encoder and auxiliary masked-LM on the task's text.

    sampler = TaskSampler({"rte": 2490, "mrpc": 3668}, mode="temperature", temperature=2.0, seed=0)
    trainer = MultiTaskTrainer({"rte": TaskSpec(rte_model, rte_loss, rte_split),
                                "mrpc": TaskSpec(mrpc_model, mrpc_loss, mrpc_split)}, optimizer, sampler)
    history = trainer.train(num_steps=500, batch_size=32, max_seq_length=128)

Every task model wraps the same encoder object with its own head; each step samples a task (the seeds: "for each
optimization step, sample a task and a batch"), takes that task's next batch (its own shuffled epochs, length
buckets) and applies one AdamW update to the encoder and that task's head. One compiled step per task, one
optimizer over the union of the variables.

Auxiliary masked-LM (`add_auxiliary_mlm`): the task loss plus weight x BERT's masked-LM loss on the same batch's
text, re-masked at every step (the seeds' example weights the task 1.0 and the LM 0.5), through a masked-LM head
tied to the word embeddings. Cost: a second forward and backward pass per step.

Sequential adaptation (Phang et al. 2018) needs no code: train on the intermediate task, then start the target
task from that run (`--init_checkpoint=<intermediate output_dir>/final`: the encoder is loaded and the other
task's head is discarded and reported).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List

import numpy as np
from absl import logging

from tfx_transfer.adaptation.regularizers import estimate_fisher, mlm_loss_fn, pretrained_variables
from tfx_transfer.data.pipeline import dataset, plan_batches
from tfx_transfer.encoders.bert_encoder import find_encoder
from tfx_transfer.layers.masked_lm import MaskedLMHead

SAMPLING = ("proportional", "temperature", "uniform")


class TaskSampler:
    """Which task each step trains: p_i proportional to n_i (proportional), n_i^(1/T) (temperature; T = 1 is
    proportional, large T tends to uniform) or 1/K (uniform). Deterministic in `seed`."""

    def __init__(self, sizes: Dict[str, int], mode: str = "proportional", temperature: float = 2.0, seed: int = 0):
        if mode not in SAMPLING:
            raise ValueError(f"Unknown task sampling {mode!r}; choose one of {list(SAMPLING)}.")
        if not sizes or any(n < 1 for n in sizes.values()):
            raise ValueError(f"TaskSampler needs at least one task with >= 1 example: {sizes}.")
        if mode == "temperature" and temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0.")
        self.tasks = list(sizes)
        n = np.asarray([sizes[t] for t in self.tasks], np.float64)
        weights = {"proportional": n, "temperature": n ** (1.0 / temperature), "uniform": np.ones_like(n)}[mode]
        self.probabilities = dict(zip(self.tasks, (weights / weights.sum()).tolist()))
        self.seed = seed

    def schedule(self, num_steps: int) -> List[str]:
        rng = np.random.default_rng(self.seed)
        return list(rng.choice(self.tasks, size=num_steps, p=[self.probabilities[t] for t in self.tasks]))


@dataclasses.dataclass
class TaskSpec:
    model: object  # a task model (e.g. BertClassifier) around the shared encoder
    loss: Callable  # keras loss(y_true, y_pred)
    split: object  # EncodedSplit with labels


class MultiTaskTrainer:
    """Trains several task models that share an encoder (see the module docstring)."""

    def __init__(self, tasks: Dict[str, TaskSpec], optimizer, sampler: TaskSampler, seed: int = 0):
        missing = set(sampler.tasks) ^ set(tasks)
        if missing:
            raise ValueError(f"MultiTaskTrainer: the sampler's tasks and the task specs differ: {sorted(missing)}.")
        self.tasks, self.optimizer, self.sampler, self.seed = tasks, optimizer, sampler, seed
        seen, variables = set(), []
        for spec in tasks.values():
            for v in spec.model.trainable_variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    variables.append(v)
        self.variables = variables
        self._steps = {}

    def _step(self, name):
        import tensorflow as tf

        if name not in self._steps:
            spec = self.tasks[name]
            variables = spec.model.trainable_variables

            @tf.function(reduce_retracing=True)
            def step(inputs, labels):
                with tf.GradientTape() as tape:
                    outputs = spec.model(inputs, training=True)
                    loss = spec.model.compute_loss(x=inputs, y=labels, y_pred=outputs, training=True) \
                        if spec.model.compiled else spec.loss(labels, outputs) + sum(spec.model.losses)
                gradients = tape.gradient(loss, variables)
                self.optimizer.apply(gradients, variables)
                return loss
            self._steps[name] = step
        return self._steps[name]

    def train(self, num_steps: int, batch_size: int, max_seq_length: int, padding: str = "longest") -> dict:
        """Runs `num_steps` updates. Returns {"steps_per_task", "mean_loss_per_task", "seconds"}."""
        self.optimizer.build(self.variables)
        iterators, epochs = {}, {name: 0 for name in self.tasks}

        def next_batch(name):
            while True:
                if name not in iterators:
                    split = self.tasks[name].split
                    plan = plan_batches(split.lengths, batch_size, max_seq_length, shuffle=True, seed=self.seed,
                                        epoch=epochs[name], padding=padding)
                    iterators[name] = iter(dataset(split, plan))
                try:
                    return next(iterators[name])
                except StopIteration:
                    del iterators[name]
                    epochs[name] += 1

        losses = {name: [] for name in self.tasks}
        start = time.perf_counter()
        for index, name in enumerate(self.sampler.schedule(num_steps)):
            inputs, labels = next_batch(name)
            losses[name].append(float(self._step(name)(inputs, labels)))
            if (index + 1) % 50 == 0:
                logging.info("Multi-task step %d/%d: %s", index + 1, num_steps,
                             ", ".join(f"{t} {np.mean(l[-20:]):.3f}" for t, l in losses.items() if l))
        return {"steps_per_task": {t: len(l) for t, l in losses.items()},
                "mean_loss_per_task": {t: float(np.mean(l)) if l else None for t, l in losses.items()},
                "seconds": time.perf_counter() - start}


def special_token_ids(vocab: List[str]) -> Dict[str, int]:
    index = {token: i for i, token in enumerate(vocab)}
    missing = [t for t in ("[MASK]", "[CLS]", "[SEP]", "[PAD]") if t not in index]
    if missing:
        raise ValueError(f"Masked-LM needs {missing} in the vocabulary.")
    return {t: index[t] for t in ("[MASK]", "[CLS]", "[SEP]", "[PAD]")}


def add_auxiliary_mlm(model, vocab: List[str], weight: float = 0.5, rate: float = 0.15, head=None):
    """Adds weight x masked-LM loss on each training batch's own text to `model` (a `TaskModel` around a
    `BertEncoder`), before compile. Returns the `MaskedLMHead` (new, tied to the word embeddings, unless given)."""
    if weight <= 0:
        raise ValueError(f"auxiliary MLM weight {weight} must be > 0.")
    encoder = find_encoder(model)
    head = head or MaskedLMHead.for_encoder(encoder)
    head.build((None, None, encoder.bert_config.hidden_size))
    ids = special_token_ids(vocab)
    loss_fn = mlm_loss_fn(encoder, head, mask_id=ids["[MASK]"], special_ids=[ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]],
                          rate=rate)
    model.add_auxiliary_loss("mlm", loss_fn, weight=weight, layers=[head])
    return head


def ewc_fisher_from_mlm(model, split, vocab: List[str], num_examples: int = 64, head_steps: int = 0,
                        max_seq_length: int = 128, seed: int = 0, head=None) -> Dict[str, np.ndarray]:
    """EWC's diagonal Fisher for `model`'s encoder variables from masked-LM on `num_examples` texts of `split`
    (one example at a time). `head_steps` > 0 first fits a new masked-LM head (encoder frozen) for that many steps
    of 16 examples, so the Fisher is not that of a random head when the checkpoint has none."""
    import keras
    import tensorflow as tf

    encoder = find_encoder(model)
    if not pretrained_variables(model):
        raise ValueError("EWC: no trainable pretrained variable to regularise (is the encoder frozen?).")
    head = head or MaskedLMHead.for_encoder(encoder, name="ewc_masked_lm")
    head.build((None, None, encoder.bert_config.hidden_size))
    ids = special_token_ids(vocab)
    loss_fn = mlm_loss_fn(encoder, head, mask_id=ids["[MASK]"], special_ids=[ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]],
                          seed=seed)
    if head_steps:
        optimizer = keras.optimizers.Adam(1e-3)
        head_variables = [v for v in head.trainable_variables]
        plan = plan_batches(split.lengths, 16, max_seq_length, shuffle=True, seed=seed)

        @tf.function(reduce_retracing=True)
        def fit_head(inputs):
            with tf.GradientTape() as tape:
                loss = loss_fn(inputs)
            optimizer.apply(tape.gradient(loss, head_variables), head_variables)
            return loss

        for step, inputs in enumerate(dataset(split, (plan * (head_steps // max(len(plan), 1) + 1))[:head_steps],
                                              with_labels=False)):
            loss = fit_head(inputs)
        logging.info("EWC: fitted a masked-LM head for %d steps (last loss %.3f).", head_steps, float(loss))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(split), size=min(num_examples, len(split)), replace=False)
    singles = [plan for plan in plan_batches(split.lengths[rows], 1, max_seq_length, shuffle=False)]
    sample = dataclasses.replace(split, word_ids=split.word_ids[rows], type_ids=split.type_ids[rows],
                                 lengths=split.lengths[rows], labels=None,
                                 guids=[split.guids[i] for i in rows])
    return estimate_fisher(loss_fn, dataset(sample, singles, with_labels=False), pretrained_variables(model))
