"""Checkpoint format detection: a path -> (reader, built-in assignment map).

Each format registers a `detect(path) -> bool` and an `open(path) -> (reader, map)`; `open_checkpoint`
tries them in order and lists what it looked for when nothing fits.
"""

from __future__ import annotations

import os
from typing import Callable, List, NamedTuple

from tfx_transfer.checkpoints.hf import hf_bert_map
from tfx_transfer.checkpoints.readers import SafetensorsReader


class CheckpointFormat(NamedTuple):
    name: str
    description: str
    detect: Callable[[str], bool]
    open: Callable[[str], tuple]


def _safetensors_path(path: str) -> str:
    if os.path.isdir(path):
        for name in ("model.safetensors", "model.safetensors.index.json"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        return ""
    if path.endswith(".safetensors") or path.endswith(".safetensors.index.json"):
        return path
    return ""


def _open_hf(path):
    return SafetensorsReader(_safetensors_path(path)), hf_bert_map()


FORMATS: List[CheckpointFormat] = [
    CheckpointFormat("hf_safetensors", "Hugging Face BERT: model.safetensors (or a shard index), or a directory "
                     "holding it", lambda p: bool(_safetensors_path(p)), _open_hf),
]


def open_checkpoint(path) -> tuple:
    """Returns (format name, reader, built-in AssignmentMap) for `path`.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: no known format matches; the message lists the formats and what the path holds.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint not found: {path!r}.")
    for fmt in FORMATS:
        if fmt.detect(path):
            reader, builtin = fmt.open(path)
            return fmt.name, reader, builtin
    holds = ", ".join(sorted(os.listdir(path))) if os.path.isdir(path) else "a file"
    known = "; ".join(f"{f.name}: {f.description}" for f in FORMATS)
    raise ValueError(f"Unknown checkpoint format at {path!r} (it holds: {holds}). Known formats: {known}.")
