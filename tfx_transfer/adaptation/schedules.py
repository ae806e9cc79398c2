"""Learning-rate schedules of the fine-tuning literature, as `keras.optimizers.schedules` classes.

    schedule = build_schedule("slanted_triangular", 1e-4, total_steps=1000, warmup_steps=100)

- `WarmupLinearDecay` — google-research/bert (`create_optimizer`): linear decay from step 0 to 0 at the end, replaced
  by a linear warmup while step < warmup_steps (`decay_from_warmup=False`), or Hugging Face's
  `get_linear_schedule_with_warmup` (`decay_from_warmup=True`: the decay starts at the peak, after the warmup).
- `SlantedTriangular` — ULMFiT (Howard & Ruder 2018, eq. 3): a short linear increase for `cut_frac` of the steps,
  a long linear decay, from and to peak / ratio.
- `ConstantWithWarmup` — linear warmup, then the peak for the rest of training.

Steps are optimizer updates (`optimizer.iterations`, which counts updates, not micro-batches, under gradient
accumulation). Every class has `get_config` and is registered, so compiled models save and load.
"""

from __future__ import annotations

import keras
from keras import ops

SCHEDULES = ("linear", "linear_after_warmup", "slanted_triangular", "constant")


def _check_steps(name, total_steps, warmup_steps):
    if total_steps < 1 or warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(f"{name}: need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}) and "
                         "total_steps >= 1.")


@keras.saving.register_keras_serializable(package="tfx_transfer")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak_learning_rate`, then linear decay to 0 at `total_steps`.

    decay_from_warmup=False (google-research/bert): lr = peak * step / warmup_steps while step < warmup_steps, else
        peak * max(0, 1 - step / total_steps) — the decay runs from step 0, so the peak is never reached exactly.
    decay_from_warmup=True (Hugging Face): after the warmup, peak * max(0, (total - step) / (total - warmup)).
    """

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0, decay_from_warmup=False):
        _check_steps("WarmupLinearDecay", total_steps, warmup_steps)
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay_from_warmup = bool(decay_from_warmup)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = float(self.warmup_steps) if self.decay_from_warmup else 0.0
        span = max(float(self.total_steps) - start, 1.0)
        decayed = self.peak_learning_rate * ops.maximum(0.0, 1.0 - (step - start) / span)
        if not self.warmup_steps:
            return decayed
        warm = self.peak_learning_rate * step / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay_from_warmup": self.decay_from_warmup}


@keras.saving.register_keras_serializable(package="tfx_transfer")
class SlantedTriangular(keras.optimizers.schedules.LearningRateSchedule):
    """ULMFiT's slanted triangular learning rate (Howard & Ruder 2018, eq. 3).

        cut = floor(total_steps * cut_frac)
        p   = step / cut                                   if step < cut
              1 - (step - cut) / (cut * (1 / cut_frac - 1))  otherwise
        lr  = peak * (1 + p * (ratio - 1)) / ratio

    Defaults are the paper's: cut_frac 0.1, ratio 32 (the lowest lr is peak / 32).
    """

    def __init__(self, peak_learning_rate, total_steps, cut_frac=0.1, ratio=32.0):
        if not 0.0 < cut_frac < 1.0:
            raise ValueError(f"SlantedTriangular: cut_frac={cut_frac} must be in (0, 1).")
        if ratio < 1.0:
            raise ValueError(f"SlantedTriangular: ratio={ratio} must be >= 1.")
        _check_steps("SlantedTriangular", total_steps, 0)
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.cut_frac = float(cut_frac)
        self.ratio = float(ratio)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cut = float(max(1, int(self.total_steps * self.cut_frac)))
        rising = step / cut
        falling = 1.0 - (step - cut) / (cut * (1.0 / self.cut_frac - 1.0))
        p = ops.maximum(0.0, ops.where(step < cut, rising, falling))
        return self.peak_learning_rate * (1.0 + p * (self.ratio - 1.0)) / self.ratio

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "total_steps": self.total_steps,
                "cut_frac": self.cut_frac, "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="tfx_transfer")
class ConstantWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """lr = peak * step / warmup_steps while step < warmup_steps, then peak."""

    def __init__(self, peak_learning_rate, warmup_steps=0):
        if warmup_steps < 0:
            raise ValueError(f"ConstantWithWarmup: warmup_steps={warmup_steps} must be >= 0.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if not self.warmup_steps:
            return ops.ones_like(step) * self.peak_learning_rate
        return self.peak_learning_rate * ops.minimum(1.0, step / float(self.warmup_steps))

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps}


def build_schedule(name: str, peak_learning_rate: float, total_steps: int, warmup_steps: int = 0,
                   stlr_ratio: float = 32.0):
    """The schedule called `name` (one of `SCHEDULES`). For "slanted_triangular" the warmup fraction
    (warmup_steps / total_steps) is ULMFiT's cut_frac (0.1 when warmup_steps is 0)."""
    if name == "linear":
        return WarmupLinearDecay(peak_learning_rate, total_steps, warmup_steps)
    if name == "linear_after_warmup":
        return WarmupLinearDecay(peak_learning_rate, total_steps, warmup_steps, decay_from_warmup=True)
    if name == "slanted_triangular":
        cut_frac = warmup_steps / total_steps if warmup_steps else 0.1
        return SlantedTriangular(peak_learning_rate, total_steps, cut_frac=min(max(cut_frac, 1e-6), 0.999),
                                 ratio=stlr_ratio)
    if name == "constant":
        return ConstantWithWarmup(peak_learning_rate, warmup_steps)
    raise ValueError(f"Unknown learning-rate schedule {name!r}; choose one of {list(SCHEDULES)}.")
