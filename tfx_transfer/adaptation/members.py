"""The adapters of a composition (`AdapterComposition`: stack, fuse) as files: an adapter trained alone becomes a
member by its name, and a composition's adaptation file refers to the members it did not train by name and
fingerprint instead of holding them.

    arrays = member_arrays("sst2", *read_adaptation("sst2.adapter.safetensors"))   # paths with "sst2/" inserted
    member_fingerprint(arrays)                                                        # what a fusion file records
"""

from __future__ import annotations

import hashlib
import re
from typing import Dict

import numpy as np

from tfx_transfer import models
from tfx_transfer.layers.adapter_config import SLOT_KINDS, AdapterComposition

_SLOT_PATH = re.compile(r"(transformer_layer_\d+/(?:attention|output)_adapter)/(.*)")


def head_paths(metadata: dict, paths) -> set:
    """The paths among `paths` that belong to the adaptation's task head (its task model states its head)."""
    head = metadata.get("head")
    patterns = getattr(models, head["type"]).head_patterns if head else ()
    return {p for p in paths if any(re.fullmatch(pattern, p) for pattern in patterns)}


def member_arrays(name: str, metadata: dict, arrays: Dict[str, np.ndarray], where: str = "adapter file"):
    """An adapter trained alone (its adaptation's metadata and arrays) as member `name` of a composition: its slot
    adapters' arrays with `<name>/` inserted after the slot (`transformer_layer_0/output_adapter/down/kernel` ->
    `transformer_layer_0/output_adapter/<name>/down/kernel`). Its head is left out.

    Raises:
        ValueError: the adaptation is not a bottleneck adapter (houlsby, pfeiffer, parallel), or it trained weights
            of the base (e.g. LayerNorms), which every member of a composition shares as they are.
    """
    kind = (metadata.get("adapters") or {}).get("kind")
    if kind not in SLOT_KINDS:
        raise ValueError(f"{where}: a composition holds bottleneck adapters ({', '.join(SLOT_KINDS)}); this is "
                         f"{kind or 'no adaptation'}.")
    head = head_paths(metadata, arrays)
    result, base = {}, []
    for path, array in arrays.items():
        match = _SLOT_PATH.fullmatch(path)
        if match:
            result[f"{match[1]}/{name}/{match[2]}"] = array
        elif path not in head:
            base.append(path)
    if base:
        raise ValueError(f"{where} trained weights of the base as well ({', '.join(sorted(base)[:3])}, ...): the "
                         "adapters of a composition share the base's. Train it with --train_layer_norms=false "
                         "(apply_strategy(model, 'adapters', train_layer_norms=False)), as AdapterHub does.")
    return result


def member_fingerprint(arrays: Dict[str, np.ndarray]) -> str:
    """SHA-256 of a member's arrays (member paths, shapes, float32 bytes; sorted by path)."""
    digest = hashlib.sha256()
    for path in sorted(arrays):
        array = np.ascontiguousarray(np.asarray(arrays[path], dtype=np.float32))
        digest.update(path.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def frozen_members(adapters, variables, arrays: Dict[str, np.ndarray]):
    """For an encoder whose `adapters` is an `AdapterComposition`: ({member name: fingerprint} of the members none of
    whose variables trains, the arrays without theirs). Other encoders: ({}, arrays)."""
    if not isinstance(adapters, AdapterComposition):
        return {}, arrays
    referenced, kept = {}, dict(arrays)
    for name in adapters.names:
        paths = [p for p in arrays if member_variable(p, name)]
        if paths and not any(variables[p].trainable for p in paths):
            referenced[name] = member_fingerprint({p: arrays[p] for p in paths})
            for path in paths:
                del kept[path]
    return referenced, kept


def member_variable(path: str, name: str) -> bool:
    """Whether the variable `path` belongs to member `name` of a composition."""
    match = _SLOT_PATH.fullmatch(path)
    return bool(match) and match[2].startswith(f"{name}/")
