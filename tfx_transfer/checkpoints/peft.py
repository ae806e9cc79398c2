"""Hugging Face peft adapter directories (`PeftModel.save_pretrained`: adapter_config.json +
adapter_model.safetensors) of a BERT encoder, read as an `AdapterConfig` and our variable values.

    config, arrays = read_peft_adapter("my-ia3-adapter/", num_layers=6)

Read: IA3 and LoRA adapters of `BertModel` or a BERT task model (`bert.` prefix), on the projections tfx_transfer
adapts the same way:

| peft module (per layer)    | IA3 (`ia3_l`)                                   | LoRA (`lora_A`, `lora_B`)          |
|----------------------------|-------------------------------------------------|------------------------------------|
| attention.self.query       | -                                               | query                              |
| attention.self.key / value | output scaled, shape [out, 1]: key / value      | key / value                        |
| attention.output.dense     | input scaled (feed-forward), [1, in]: attention_output | attention_output            |
| output.dense (the FFN's)   | input scaled (feed-forward), [1, in]: ffn       | -                                  |

peft's IA3 default for BERT (`target_modules=["key", "value", "output.dense"]`) matches both output projections, so
its adapters scale the attention context as well as the paper's keys, values and FFN activations. Whether a vector
scales a projection's input or output is read from its shape, as peft lays it out. LoRA's
A [r, in] and B [out, r] (torch Linear layout) become our A [in, r] and B [r, out], with alpha = r x peft's scaling
(lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora). Refused with a clear error: other methods, DoRA, trained
biases, per-module ranks or alphas, saved heads (`modules_to_save`), projections we do not adapt, and targets that
differ between layers.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Dict, Tuple

import numpy as np

from tfx_transfer.layers.adapter_config import AdapterConfig
from tfx_transfer.layers.ia3 import SCALE_PATHS

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"(?:.*\.)?encoder\.layer\.(\d+)\.(.+)\.(ia3_l|lora_A\.weight|lora_B\.weight)")
_LORA_TARGETS = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
                 "attention.output.dense": "attention_output"}
_IA3_TARGETS = {("attention.self.key", "output"): "key", ("attention.self.value", "output"): "value",
                ("attention.output.dense", "input"): "attention_output", ("output.dense", "input"): "ffn"}


def read_peft_adapter(directory, num_layers: int) -> Tuple[AdapterConfig, Dict[str, np.ndarray]]:
    """(the `AdapterConfig` the adapter implies, {our variable path: array}) of a peft adapter directory.

    Args:
        directory: what `PeftModel.save_pretrained` wrote (adapter_config.json, adapter_model.safetensors).
        num_layers: the base encoder's layer count (layer indices are checked against it).

    Raises:
        FileNotFoundError: a file is missing. ValueError: an adapter tfx_transfer cannot represent exactly.
    """
    from safetensors.numpy import load_file

    directory = os.fspath(directory)
    config_path, weights_path = os.path.join(directory, CONFIG_FILE), os.path.join(directory, WEIGHTS_FILE)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{directory}: no {os.path.basename(path)} (a peft adapter directory holds "
                                    f"{CONFIG_FILE} and {WEIGHTS_FILE}; pickled adapter_model.bin is not read).")
    with open(config_path, encoding="utf-8") as f:
        peft_config = json.load(f)
    tensors = load_file(weights_path)
    kind = peft_config.get("peft_type")
    unknown = sorted(k for k in tensors if not _KEY.fullmatch(k))
    if unknown:
        raise ValueError(f"{directory}: weights outside the encoder layers' adapters, e.g. {unknown[:3]} (saved "
                         "heads or other modules: modules_to_save is not read).")
    by_layer: Dict[int, Dict[str, Dict[str, np.ndarray]]] = {}
    for key, value in tensors.items():
        layer, module, name = _KEY.fullmatch(key).groups()
        if not 0 <= int(layer) < num_layers:
            raise ValueError(f"{directory}: {key} adapts layer {layer} of a {num_layers}-layer encoder.")
        by_layer.setdefault(int(layer), {}).setdefault(module, {})[name] = value
    if kind == "IA3":
        config, arrays = _ia3(directory, by_layer)
    elif kind == "LORA":
        config, arrays = _lora(directory, peft_config, by_layer)
    else:
        raise ValueError(f"{directory}: peft_type {kind!r}; tfx_transfer reads IA3 and LORA adapters.")
    layers = sorted(by_layer)
    if layers != list(range(num_layers)):
        config = AdapterConfig(**{**config.to_dict(), "layers": tuple(layers)})
    return config, arrays


def _same_targets(directory, targets_by_layer):
    sets = {tuple(sorted(t)) for t in targets_by_layer.values()}
    if len(sets) > 1:
        raise ValueError(f"{directory}: the adapted projections differ between layers ({sorted(sets)}); an "
                         "AdapterConfig adapts the same ones in every adapted layer.")
    return sets.pop()


def _ia3(directory, by_layer):
    arrays, targets = {}, {}
    for layer, modules in by_layer.items():
        targets[layer] = []
        for module, values in modules.items():
            scale = values["ia3_l"]
            mode = "input" if scale.shape[0] == 1 else "output"
            target = _IA3_TARGETS.get((module, mode))
            if target is None:
                raise ValueError(f"{directory}: an IA3 vector scaling the {mode} of layer {layer}'s {module} has no "
                                 "tfx_transfer equivalent (read: the key and value outputs, the inputs of "
                                 "attention.output.dense and of the FFN's output.dense).")
            arrays[f"transformer_layer_{layer}/{SCALE_PATHS[target]}"] = scale.reshape(-1)
            targets[layer].append(target)
    order = ("key", "value", "attention_output", "ffn")
    chosen = _same_targets(directory, targets)
    return AdapterConfig(kind="ia3", ia3_targets=tuple(t for t in order if t in chosen)), arrays


def _lora(directory, peft_config, by_layer):
    for option, neutral in (("use_dora", False), ("rank_pattern", {}), ("alpha_pattern", {}), ("bias", "none"),
                            ("lora_bias", False), ("layer_replication", None)):
        value = peft_config.get(option)
        if value is not None and value != neutral:
            raise ValueError(f"{directory}: LoRA with {option}={peft_config[option]!r} is not read (tfx_transfer's "
                             "LoRA has one rank and alpha, no trained biases, no DoRA).")
    rank = int(peft_config["r"])
    scaling = peft_config["lora_alpha"] / (math.sqrt(rank) if peft_config.get("use_rslora") else rank)
    arrays, targets = {}, {}
    for layer, modules in by_layer.items():
        targets[layer] = []
        for module, values in modules.items():
            target = _LORA_TARGETS.get(module)
            if target is None:
                raise ValueError(f"{directory}: LoRA on layer {layer}'s {module} has no tfx_transfer equivalent "
                                 f"(read: {', '.join(_LORA_TARGETS)}).")
            missing = sorted({"lora_A.weight", "lora_B.weight"} - set(values))
            if missing:
                raise ValueError(f"{directory}: layer {layer}'s {module} has no {missing[0]}.")
            a, b = values["lora_A.weight"], values["lora_B.weight"]  # [r, in], [out, r]
            if a.shape[0] != rank or b.shape[1] != rank:
                raise ValueError(f"{directory}: layer {layer}'s {module} has rank {a.shape[0]}, the config r={rank}.")
            prefix = f"transformer_layer_{layer}/self_attention/{target}_lora"
            arrays[f"{prefix}/lora_a"], arrays[f"{prefix}/lora_b"] = a.T, b.T
            targets[layer].append(target)
    order = ("query", "key", "value", "attention_output")
    chosen = _same_targets(directory, targets)
    config = AdapterConfig(kind="lora", lora_rank=rank, lora_alpha=float(scaling * rank),
                           lora_dropout=float(peft_config.get("lora_dropout", 0.0)),
                           lora_targets=tuple(t for t in order if t in chosen))
    return config, arrays
