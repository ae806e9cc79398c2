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
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{path}: not a safetensors shard index (no 'weight_map').") from error
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
                raise ValueError(f"{shard}: not a readable safetensors file ({e}).") from e
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
            raise ValueError(f"{prefix}: not a readable TensorFlow checkpoint ({first_line}).") from e
        self._shapes = {name: tuple(shape) for name, shape in self._reader.get_variable_to_shape_map().items()}

    def shapes(self):
        return dict(self._shapes)

    def read(self, name):
        try:
            return np.asarray(self._reader.get_tensor(name))
        except Exception as e:
            raise ValueError(f"{self.path}: cannot read tensor {name!r} ({type(e).__name__}); the checkpoint's data "
                             "file may be truncated or corrupt.") from e


class ObjectCheckpointReader(CheckpointReader):
    """An object-based TF2 checkpoint (`tf.train.Checkpoint`, what Model Garden's converter and trainers write).

    Its tensors are stored under object paths (`model/layer_with_weights-0/.../kernel/.ATTRIBUTES/VARIABLE_VALUE`),
    but the object graph records each variable's own name (`full_name`, e.g.
    `transformer/layer_0/self_attention/query/kernel`), so the tensors are listed under those names and read like a
    name-based checkpoint. Optimizer slots and state, `save_counter` and names recorded twice keep their object
    paths (`.../.OPTIMIZER_SLOT/...`, `optimizer/...`), which the name tables ignore or report.
    """

    format = "tf2_object_checkpoint"
    GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"

    def __init__(self, prefix: str):
        super().__init__(prefix)
        import tensorflow as tf
        from tensorflow.core.protobuf import trackable_object_graph_pb2

        try:
            self._reader = tf.train.load_checkpoint(prefix)
            graph = trackable_object_graph_pb2.TrackableObjectGraph()
            graph.ParseFromString(self._reader.get_tensor(self.GRAPH_KEY))
        except Exception as e:  # DataLossError / NotFoundError / DecodeError for damaged files
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{prefix}: not a readable object-based TensorFlow checkpoint ({first_line}).") from e
        shapes = self._reader.get_variable_to_shape_map()
        named = {}
        for node in graph.nodes:
            for attribute in node.attributes:
                key = attribute.checkpoint_key
                if key not in shapes:
                    continue
                full_name = attribute.full_name[:-2] if attribute.full_name.endswith(":0") else attribute.full_name
                bookkeeping = "/.OPTIMIZER_SLOT/" in key or key.startswith(("optimizer/", "save_counter"))
                named[key] = key if bookkeeping or not full_name else full_name
        counts = {}
        for name in named.values():
            counts[name] = counts.get(name, 0) + 1
        self._keys = {}
        for key, name in named.items():
            self._keys[name if counts[name] == 1 else key] = key
        self._shapes = {name: tuple(shapes[key]) for name, key in self._keys.items()}

    @staticmethod
    def is_object_based(prefix: str) -> bool:
        import tensorflow as tf

        try:
            return ObjectCheckpointReader.GRAPH_KEY in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
        except Exception:
            return False

    def shapes(self):
        return dict(self._shapes)

    def read(self, name):
        try:
            return np.asarray(self._reader.get_tensor(self._keys[name]))
        except Exception as e:
            raise ValueError(f"{self.path}: cannot read tensor {name!r} ({type(e).__name__}); the checkpoint's data "
                             "file may be truncated or corrupt.") from e


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
