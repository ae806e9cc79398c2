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
