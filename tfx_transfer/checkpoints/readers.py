"""Checkpoint readers: a name -> shape listing and lazy reads of one tensor at a time."""

from __future__ import annotations

import json
import os
from typing import Dict, Tuple

import numpy as np


class CheckpointReader:
    """Interface every format implements."""

    format = "unknown"

    def __init__(self, path: str):
        self.path = path

    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        raise NotImplementedError

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError


class SafetensorsReader(CheckpointReader):
    """A `.safetensors` file, or a Hugging Face shard index (`model.safetensors.index.json`)."""

    format = "safetensors"

    def __init__(self, path: str):
        super().__init__(path)
        from safetensors import safe_open

        if path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path}: not a safetensors shard index (no 'weight_map').") from None
            directory = os.path.dirname(path)
            files = {name: os.path.join(directory, shard) for name, shard in weight_map.items()}
        else:
            files = None
        self._handles = {}
        self._file_of = {}
        for shard in sorted(set(files.values())) if files else [path]:
            if not os.path.isfile(shard):
                raise FileNotFoundError(f"Safetensors file not found: {shard!r}.")
            try:
                handle = safe_open(shard, framework="numpy")
            except Exception as e:  # safetensors raises its own error types for corrupt headers
                raise ValueError(f"{shard}: not a readable safetensors file ({e}).") from None
            self._handles[shard] = handle
            for name in handle.keys():
                self._file_of[name] = shard

    def shapes(self):
        return {name: tuple(self._handles[shard].get_slice(name).get_shape())
                for name, shard in self._file_of.items()}

    def read(self, name):
        return self._handles[self._file_of[name]].get_tensor(name)


class TFCheckpointReader(CheckpointReader):
    """A name-based TensorFlow checkpoint (`<prefix>.index` + `<prefix>.data-*`), e.g. Google's `bert_model.ckpt`."""

    format = "tf_checkpoint"

    def __init__(self, prefix: str):
        super().__init__(prefix)
        import tensorflow as tf

        try:
            self._reader = tf.train.load_checkpoint(prefix)
        except Exception as e:  # tf raises DataLossError / NotFoundError / OpError for damaged files
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{prefix}: not a readable TensorFlow checkpoint ({first_line}).") from None
        self._shapes = {name: tuple(shape) for name, shape in self._reader.get_variable_to_shape_map().items()}

    def shapes(self):
        return dict(self._shapes)

    def read(self, name):
        try:
            return np.asarray(self._reader.get_tensor(name))
        except Exception as e:
            raise ValueError(f"{self.path}: cannot read tensor {name!r} ({type(e).__name__}); the checkpoint's data "
                             "file may be truncated or corrupt.") from None


class ArrayReader(CheckpointReader):
    """Tensors already in memory ({name: array}), e.g. the variables of a SavedModel or a Keras model."""

    format = "arrays"

    def __init__(self, arrays: Dict[str, np.ndarray], path: str = "<memory>"):
        super().__init__(path)
        self._arrays = arrays

    def shapes(self):
        return {name: tuple(np.shape(array)) for name, array in self._arrays.items()}

    def read(self, name):
        return np.asarray(self._arrays[name])


def saved_model_arrays(path: str) -> Dict[str, np.ndarray]:
    """{variable name (without ':0'): value} of a TF2 SavedModel, e.g. a TF Hub BERT encoder.

    Raises:
        ValueError: the directory is not a loadable SavedModel, or two variables share a name.
    """
    import tensorflow as tf

    try:
        import tensorflow_text  # noqa: F401  (preprocessing SavedModels need its ops registered)
    except ImportError:
        pass
    try:
        obj = tf.saved_model.load(path)
    except Exception as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a loadable SavedModel ({first_line}).") from None
    variables = getattr(obj, "variables", None)  # Reusable SavedModels (TF Hub) list their variables
    if variables is None:
        variables = [t for t in tf.train.TrackableView(obj).descendants() if isinstance(t, tf.Variable)]
    arrays = {}
    seen = set()
    for variable in variables:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        name = variable.name[:-2] if variable.name.endswith(":0") else variable.name
        if name in arrays:
            raise ValueError(f"{path}: two SavedModel variables are named {name!r}; cannot map them by name.")
        arrays[name] = variable.numpy()
    return arrays
