"""Tensor transforms applied between a checkpoint tensor and the model variable it initialises.

A transform is a small object with `__call__(array, target_shape) -> array` and a JSON form, so user
assignment maps can be written in a file:  "transpose", {"name": "reshape", "shape": [768, 768]}.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np


class Transform:
    """Base class. `name` identifies the transform in JSON."""

    name = "identity"

    def __call__(self, array: np.ndarray, target_shape: Tuple[int, ...]) -> np.ndarray:
        return array

    def to_config(self):
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and self.to_config() == other.to_config()


class Transpose(Transform):
    """Permutes axes; default reverses them (PyTorch `[out, in]` -> Keras `[in, out]`)."""

    name = "transpose"

    def __init__(self, axes: Sequence[int] | None = None):
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def __call__(self, array, target_shape):
        return np.transpose(array, self.axes)

    def to_config(self):
        return self.name if self.axes is None else {"name": self.name, "axes": list(self.axes)}

    def __repr__(self):
        return f"Transpose({'' if self.axes is None else list(self.axes)})"


class Reshape(Transform):
    """Reshapes to `shape`, or to the target variable's shape when `shape` is None.

    E.g. Model Garden's query kernel [H, heads, H/heads] -> our [H, H]. The element count must match.
    """

    name = "reshape"

    def __init__(self, shape: Sequence[int] | None = None):
        self.shape = None if shape is None else tuple(int(s) for s in shape)

    def __call__(self, array, target_shape):
        shape = self.shape if self.shape is not None else tuple(target_shape)
        try:
            return np.reshape(array, shape)
        except ValueError as error:
            raise ValueError(f"cannot reshape a tensor of shape {tuple(array.shape)} to {shape}") from error

    def to_config(self):
        return self.name if self.shape is None else {"name": self.name, "shape": list(self.shape)}

    def __repr__(self):
        return f"Reshape({'' if self.shape is None else list(self.shape)})"


class FitRows(Transform):
    """Fits the first dimension to the target's: keeps the first rows, or repeats the rows cyclically.

    For structurally different models (the seeds: "initialise as much as possible"): a 512-position table into a
    128-position model keeps rows 0..127; a 1-type checkpoint (RoBERTa-style) into a 2-type model copies the one
    type row to both.
    """

    name = "fit_rows"

    def __call__(self, array, target_shape):
        rows = target_shape[0]
        if array.shape[1:] != tuple(target_shape[1:]):
            raise ValueError(f"fit_rows changes only the first dimension; {tuple(array.shape)} vs {tuple(target_shape)}")
        if array.shape[0] >= rows:
            return array[:rows]
        return np.resize(array, (rows,) + tuple(array.shape[1:]))


_REGISTRY = {cls.name: cls for cls in (Transform, Transpose, Reshape, FitRows)}


def transform_from_config(config) -> Transform:
    """Inverse of `to_config`: "transpose" or {"name": "reshape", "shape": [...]}."""
    if isinstance(config, Transform):
        return config
    if isinstance(config, str):
        name, kwargs = config, {}
    elif isinstance(config, dict) and "name" in config:
        kwargs = dict(config)
        name = kwargs.pop("name")
    else:
        raise ValueError(f"Transform {config!r}: expected a name or {{'name': ..., ...}}; known: {sorted(_REGISTRY)}.")
    if name not in _REGISTRY:
        raise ValueError(f"Unknown transform {name!r}; known transforms: {sorted(_REGISTRY)}.")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"Transform {config!r}: bad arguments ({e}).") from e
