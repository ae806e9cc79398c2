"""When weights start training: gradual unfreezing, chain-thaw and sequential unfreezing as a Keras callback.

    optimizer = create_optimizer(..., per_variable_rates=True, model=model)
    model.compile(optimizer=optimizer, ...)
    plan = unfreezing_plan("gradual", num_layers=6, total_steps=600)
    model.fit(..., callbacks=[UnfreezingCallback(plan)])

A plan is a list of `Phase(start_step, depths)`: from optimizer step `start_step` on, the variables whose depth
from the top (`optimizers.layer_depths`: 0 = head and pooler, 1..L = transformer layers top-down, L + 1 =
embeddings) is in `depths` train; the others are frozen.

- gradual (ULMFiT, Howard & Ruder 2018; the seeds' hands-on #4): the head first, then one more block every
  `interval` steps from the top, until everything trains.
- chain_thaw (Felbo et al. 2017): the new head alone, then each layer alone from the bottom (embeddings first) up to
  the top, then everything.
- sequential (Chronopoulou et al. 2019): the head for n steps, then everything except the embeddings for k steps,
  then everything.

How freezing is done: not by flipping `variable.trainable` — Keras traces the train step over the trainable set, so
every change would retrace and recompile the step (~17-22 s for MiniLM on this CPU, once per phase: 8 phases for a
6-layer model) and rebuild nothing in the optimizer. The callback instead sets per-variable rates in the
optimizer (`PerVariableRates`: rate 0 = frozen: zero gradient, zero update, zero decay — bit-identical), one
variable assignment, no retracing. The price: the backward pass always reaches the embeddings, so a frozen
phase costs as much as a full step. Variables the adaptation strategy froze (`apply_strategy`) stay frozen.
The phase follows `optimizer.iterations`, so a resumed run continues in the right phase.
"""

from __future__ import annotations

import dataclasses
from typing import FrozenSet, List, Optional

import keras
import numpy as np
from absl import logging

from tfx_transfer.adaptation.optimizers import PerVariableRates, layer_depths
from tfx_transfer.encoders.bert_encoder import find_encoder

UNFREEZING = ("none", "gradual", "chain_thaw", "sequential")


@dataclasses.dataclass(frozen=True)
class Phase:
    start_step: int
    depths: FrozenSet[int]
    description: str


def unfreezing_plan(kind: str, num_layers: int, total_steps: int, interval: Optional[int] = None,
                    sequential_steps=(None, None)) -> List[Phase]:
    """The phases of `kind` (one of `UNFREEZING`) for an encoder of `num_layers` layers trained `total_steps` steps.

    interval: steps per phase for gradual / chain_thaw (default: training split evenly over the phases).
    sequential_steps: (n, k) for sequential: head only for n steps, then all but the embeddings for k steps
        (default: a third of training each).
    """
    deepest = num_layers + 1
    everything = frozenset(range(deepest + 1))
    if kind == "none":
        return [Phase(0, everything, "everything")]
    if kind == "gradual":
        steps = interval or max(1, total_steps // (deepest + 1))
        return [Phase(k * steps, frozenset(range(k + 1)), "head" if k == 0 else f"+ {_name(k, num_layers)}")
                for k in range(deepest + 1)]
    if kind == "chain_thaw":
        steps = interval or max(1, total_steps // (deepest + 2))
        order = [0] + list(range(deepest, 0, -1))
        phases = [Phase(i * steps, frozenset([d]), f"only {_name(d, num_layers)}") for i, d in enumerate(order)]
        return phases + [Phase(len(order) * steps, everything, "everything")]
    if kind == "sequential":
        n, k = sequential_steps
        n = total_steps // 3 if n is None else n
        k = total_steps // 3 if k is None else k
        return [Phase(0, frozenset([0]), "head"), Phase(n, frozenset(range(deepest)), "all but the embeddings"),
                Phase(n + k, everything, "everything")]
    raise ValueError(f"Unknown unfreezing {kind!r}; choose one of {list(UNFREEZING)}.")


def _name(depth: int, num_layers: int) -> str:
    if depth == 0:
        return "head"
    if depth == num_layers + 1:
        return "embeddings"
    return f"transformer_layer_{num_layers - depth}"


def phase_at(plan: List[Phase], step: int) -> int:
    """Index of the phase active at optimizer step `step`."""
    index = 0
    for i, phase in enumerate(plan):
        if step >= phase.start_step:
            index = i
    return index


class UnfreezingCallback(keras.callbacks.Callback):
    """Applies an unfreezing plan by setting the optimizer's per-variable rates at phase boundaries.

    The model's optimizer must be a `PerVariableRates` optimizer (`create_optimizer(per_variable_rates=True)`);
    its configured multipliers (e.g. layer-wise decay) are the rates unfrozen variables get. `history` lists
    (step, phase description, newly unfrozen paths) as the seeds' hands-on prints them.
    """

    def __init__(self, plan: List[Phase], num_layers: Optional[int] = None):
        super().__init__()
        self.plan = list(plan)
        self.num_layers = num_layers
        self.history = []
        self._base_rates = None
        self._depths = None
        self._phase = None

    def _setup(self):
        optimizer = self.model.optimizer
        if not isinstance(optimizer, PerVariableRates):
            raise ValueError("UnfreezingCallback needs an optimizer with per-variable rates: "
                             "create_optimizer(..., per_variable_rates=True, model=model).")
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        num_layers = self.num_layers or find_encoder(self.model).bert_config.num_hidden_layers
        # The configured multipliers, not the variable: a resumed run restores rates already gated to 0.
        self._base_rates = {p: optimizer.lr_multipliers.get(p, 1.0) for p in optimizer.rate_paths}
        self._depths = layer_depths(list(self._base_rates), num_layers)

    def on_train_batch_begin(self, batch, logs=None):
        if self._base_rates is None:
            self._setup()
        step = int(np.asarray(self.model.optimizer.iterations))
        index = phase_at(self.plan, step)
        if index == self._phase:
            return
        phase = self.plan[index]
        previous = self.plan[self._phase].depths if self._phase is not None else frozenset()
        rates = {p: (r if self._depths[p] in phase.depths else 0.0) for p, r in self._base_rates.items()}
        self.model.optimizer.set_rates(rates)
        unfrozen = [p for p in rates if self._depths[p] in phase.depths and self._depths[p] not in previous]
        training = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables if rates.get(v.path, 0) > 0)
        logging.info("Step %d: unfreezing phase %d/%d (%s): %d variables newly training, %s parameters training.",
                     step, index + 1, len(self.plan), phase.description, len(unfrozen), f"{training:,}")
        self.history.append((step, phase.description, unfrozen))
        self._phase = index
