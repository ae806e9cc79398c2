"""Adapter-only files: the few MB a task adds to a shared base model.

`save_adaptation(model, path)` writes the model's trainable weights (adapters, LayerNorms, head - whatever the
strategy trained) plus every adaptation weight, as safetensors, with JSON metadata: the adapter config, the
head, the base architecture and a fingerprint of the base weights the task did not train.
`load_adaptation(base_encoder, path)` rebuilds the task model on a base and refuses a different base.
`load_peft_adapter(base_encoder, directory)` puts a Hugging Face peft IA3 or LoRA adapter on a base encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterable, Optional

import numpy as np

from tfx_transfer import models
from tfx_transfer.adaptation.members import frozen_members, member_arrays, member_fingerprint
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.checkpoints.peft import read_peft_adapter
from tfx_transfer.config import BertConfig
from tfx_transfer.encoders.bert_encoder import BertEncoder, find_encoder
from tfx_transfer.layers.adapter_config import AdapterConfig, is_adaptation_variable

FORMAT = "tfx_transfer.adaptation/1"


def base_fingerprint(encoder, paths: Iterable[str]) -> str:
    """sha256 over the names, shapes and bytes of the given base variables of `encoder` (sorted by path)."""
    variables = model_variables(encoder)
    digest = hashlib.sha256()
    for path in sorted(paths):
        if path not in variables:
            raise ValueError(f"The base encoder has no variable {path!r}: it is not the model this adaptation was "
                             "trained on.")
        array = np.ascontiguousarray(np.asarray(variables[path], dtype=np.float32))
        digest.update(path.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _head_config(model) -> Optional[dict]:
    """The task model's own config without its encoder (None for a bare encoder)."""
    if model is find_encoder(model):
        return None
    config = {k: v for k, v in model.get_config().items() if k not in ("encoder", "name", "trainable")}
    return {"type": type(model).__name__, **config}


def adaptation_state(model, labels: Optional[list] = None, extra: Optional[dict] = None):
    """(metadata, {path: array}): what `save_adaptation` writes for `model` (a task model or an encoder), in memory.

    The arrays: every trainable variable and every adaptation variable (prefix tuning's reparameterisation MLP is
    replaced by the prefixes it computes), except a composition's adapters that did not train (a fusion's, a stack's
    lower ones): the metadata's "members" refers to those by name and fingerprint (`with_members` reads them back).
    The metadata: the adapter config, the head's config, the base architecture, the labels, `extra`, and a
    fingerprint of every frozen base variable (the paths it covers too), so the arrays are refused on another base."""
    encoder = find_encoder(model)
    variables = model_variables(model)
    encoder_paths = set(model_variables(encoder))
    saved = {p: v for p, v in variables.items() if v.trainable or is_adaptation_variable(p)}
    frozen_base = sorted(p for p in encoder_paths if p not in saved)
    arrays = {p: np.ascontiguousarray(np.asarray(v)) for p, v in saved.items()}
    members, arrays = frozen_members(encoder.adapters, variables, arrays)  # a composition's untrained adapters
    adapters = encoder.adapters.to_dict() if encoder.adapters else None
    if adapters and adapters["kind"] == "prefix" and adapters["prefix_projection"]:
        # Li & Liang keep the prefixes, not the MLP that trained them: the file is a directly parameterised prefix.
        arrays = {p: a for p, a in arrays.items() if not p.startswith("prefix_encoder/")}
        arrays["prefix_encoder/prefixes"] = np.ascontiguousarray(encoder.get_layer("prefix_encoder").folded())
        adapters["prefix_projection"] = 0
    metadata = {
        "format": FORMAT,
        "adapters": adapters,
        "base_config": encoder.bert_config.to_dict(),
        "base_fingerprint": base_fingerprint(encoder, frozen_base),
        "fingerprinted_paths": frozen_base,
        "head": _head_config(model),
        "labels": list(labels) if labels is not None else None,
        "extra": extra or {},
    }
    if members:
        metadata["members"] = members  # {name: fingerprint}: files loaded with `members=` (with_members)
    return metadata, arrays


def save_adaptation(model, path, labels: Optional[list] = None, extra: Optional[dict] = None) -> Dict[str, object]:
    """Writes the task-specific weights of `model` (a `BertClassifier` or an encoder) to `path` (safetensors): the
    arrays and metadata of `adaptation_state`. Returns the metadata written. Atomic (temp file + rename)."""
    metadata, arrays = adaptation_state(model, labels, extra)
    write_adaptation(path, metadata, arrays)
    return metadata


def write_adaptation(path, metadata: dict, arrays: Dict[str, np.ndarray]) -> None:
    """Writes an adaptation file (safetensors: the arrays, and the metadata as JSON under "tfx_transfer"),
    atomically (temp file + rename)."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    tmp = path + ".tmp"
    save_file({p: np.ascontiguousarray(a) for p, a in arrays.items()}, tmp,
              metadata={"tfx_transfer": json.dumps(metadata)})
    os.replace(tmp, path)


def read_adaptation(path):
    """(metadata dict, {path: array}) of an adaptation file; clear errors for other files."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Adaptation file not found: {path!r}.")
    try:
        with safe_open(path, framework="numpy") as f:
            raw = (f.metadata() or {}).get("tfx_transfer")
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}).") from e
    if raw is None:
        raise ValueError(f"{path}: a safetensors file without tfx_transfer adaptation metadata; write adaptation "
                         "files with save_adaptation().")
    metadata = json.loads(raw)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: adaptation format {metadata.get('format')!r}, expected {FORMAT!r}.")
    return metadata, arrays


def check_base(encoder, metadata, path="adaptation file"):
    """Raises ValueError when `encoder` is not the base the adaptation was trained on."""
    expected = BertConfig(**metadata["base_config"])
    if encoder.bert_config != expected:
        raise ValueError(f"{path} was trained on a different base architecture ({expected}) than this encoder "
                         f"({encoder.bert_config}).")
    fingerprint = base_fingerprint(encoder, metadata["fingerprinted_paths"])
    if fingerprint != metadata["base_fingerprint"]:
        raise ValueError(f"{path} was trained on a different base model: base weight fingerprint "
                         f"{metadata['base_fingerprint'][:12]}... vs this encoder's {fingerprint[:12]}.... Load it "
                         "onto the pretrained model it was trained from.")


def build_task_model(encoder, metadata):
    head = dict(metadata.get("head") or {})
    if not head:
        return encoder
    kind = head.pop("type")
    if kind not in models.__all__:
        raise ValueError(f"Unknown head type {kind!r} in the adaptation file; known: {models.__all__}.")
    return getattr(models, kind)(encoder, **head)


def adapted_encoder(base_encoder, adapters: Optional[dict]):
    """`base_encoder` itself when it already has this adapter architecture, else a new encoder with the adapters
    and a copy of the base weights."""
    wanted = AdapterConfig.from_dict(adapters) if adapters else None
    if base_encoder.adapters == wanted:
        return base_encoder
    encoder = BertEncoder.from_bert_config(base_encoder.bert_config, adapters=wanted)
    base = model_variables(base_encoder)
    for path, variable in model_variables(encoder).items():
        if path in base:
            variable.assign(base[path])
    encoder.pretrained = base_encoder.pretrained
    return encoder


def assign_arrays(model, arrays, path="adaptation file"):
    variables = model_variables(model)
    missing = sorted(set(arrays) - set(variables))
    if missing:
        raise ValueError(f"{path} holds weights this model does not have: {missing[:5]}.")
    for name, array in arrays.items():
        if tuple(variables[name].shape) != tuple(array.shape):
            raise ValueError(f"{path}: {name!r} has shape {list(array.shape)}, the model's variable "
                             f"{list(variables[name].shape)}.")
    for name, array in arrays.items():
        variables[name].assign(array)


def with_members(base_encoder, metadata, arrays, members=None, where="adaptation file"):
    """The arrays of a composition's adaptation with the members it refers to (metadata "members": {name:
    fingerprint}) read from their files: `members` {name: adapter file} (each checked against the base and the
    fingerprint). Adaptations without references come back as they are.

    Raises:
        ValueError: a referenced member without a file, or a file that is not the adapter the reference names.
    """
    referenced = metadata.get("members") or {}
    missing = sorted(set(referenced) - set(members or {}))
    if missing:
        raise ValueError(f"{where} composes adapters it does not hold: {', '.join(missing)}; pass their files "
                         f"(members={{name: path}}, e.g. the runs' final/adapter.safetensors).")
    arrays = dict(arrays)
    for name, fingerprint in referenced.items():
        member_metadata, member = read_adaptation(members[name])
        check_base(base_encoder, member_metadata, f"member {name!r} ({os.fspath(members[name])})")
        member = member_arrays(name, member_metadata, member, f"member {name!r} ({os.fspath(members[name])})")
        if member_fingerprint(member) != fingerprint:
            raise ValueError(f"{where}: {os.fspath(members[name])} is not the adapter {name!r} it was trained with "
                             f"(fingerprint {member_fingerprint(member)[:12]}... vs {fingerprint[:12]}...).")
        arrays.update(member)
    return arrays


def load_adaptation(base_encoder, path, members=None):
    """Rebuilds the task model saved by `save_adaptation` on `base_encoder` (a pretrained `BertEncoder`).

    Reuses `base_encoder` when it was built with the same `adapters` config (its adapter and LayerNorm values
    are overwritten); otherwise builds an adapted copy. Returns the task model (e.g. a `BertClassifier`); its
    `adaptation_metadata` attribute holds the file's metadata (labels, ...). A fusion's or a stack's file refers to
    the adapters it did not train: pass their files as `members` {name: path} (`with_members`).

    Raises:
        ValueError: the file was trained on another base (architecture or weight fingerprint), or a member is
            missing or not the one it was trained with.
    """
    metadata, arrays = read_adaptation(path)
    check_base(base_encoder, metadata, os.fspath(path))
    arrays = with_members(base_encoder, metadata, arrays, members, os.fspath(path))
    encoder = adapted_encoder(base_encoder, metadata["adapters"])
    model = build_task_model(encoder, metadata)
    assign_arrays(model, arrays, os.fspath(path))
    model.adaptation_metadata = metadata
    return model


def load_peft_adapter(base_encoder, directory):
    """`base_encoder` (a `BertEncoder` with the weights the adapter was trained on, e.g. `from_pretrained` of the
    transformers model named in its adapter_config.json) with the IA3 or LoRA adapter that Hugging Face peft saved
    in `directory`: an encoder (`adapters` the `AdapterConfig` the adapter implies; `base_encoder` itself when it has
    that architecture already, else a copy) whose outputs are the `PeftModel`'s. Merge it for serving with
    `merge_adaptation`, train it further, or save it with `save_adaptation`. What is read and what is refused:
    `checkpoints.peft`. peft files carry no fingerprint of their base: only the shapes are checked."""
    config, arrays = read_peft_adapter(directory, base_encoder.bert_config.num_hidden_layers)
    encoder = adapted_encoder(base_encoder, config.to_dict())
    assign_arrays(encoder, arrays, os.fspath(directory))
    return encoder
