"""Operations on trained adaptations: LoRA and (IA)^3 merging for serving, and the adapter-ablation study of
Houlsby et al.

    served = merge_adaptation(model)            # same outputs, no LoRA / (IA)^3 variables, frozen kernels updated
    with ablate_adapters(model, layers=[0, 1]): # adapters of layers 0-1 act as the identity
        evaluate(model)
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterable, Optional

import numpy as np

from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.encoders.bert_encoder import BertEncoder, find_encoder
from tfx_transfer.layers.adapter_config import MERGEABLE_KINDS, mergeable
from tfx_transfer.layers.ia3 import FOLDED_INTO, scales_input


def _merged_values(encoder) -> dict:
    """The base variables of `encoder` with its LoRA updates or (IA)^3 vectors folded in: {path: array}.

    LoRA: W' = W + (alpha / r) A B. (IA)^3 on a projection's output: W' = W diag(l), b' = l * b; on its input:
    W' = diag(l) W (Liu et al. 2022, sec. 3.3)."""
    values = {p: np.asarray(v) for p, v in model_variables(encoder).items()}
    for index in range(encoder.bert_config.num_hidden_layers):
        prefix = f"transformer_layer_{index}"
        block = encoder.get_layer(prefix)
        for target, delta in block.self_attention.lora.items():
            values[f"{prefix}/self_attention/{target}/kernel"] = (
                values[f"{prefix}/self_attention/{target}/kernel"] + np.asarray(delta.merged_kernel_delta()))
        scales = dict(block.self_attention.ia3)
        if block.intermediate_ia3 is not None:
            scales["ffn"] = block.intermediate_ia3
        for target, layer in scales.items():
            scale = np.asarray(layer.scale)
            projection = f"{prefix}/{FOLDED_INTO[target]}"
            if scales_input(target):
                values[f"{projection}/kernel"] = values[f"{projection}/kernel"] * scale[:, None]
            else:
                values[f"{projection}/kernel"] = values[f"{projection}/kernel"] * scale[None, :]
                values[f"{projection}/bias"] = values[f"{projection}/bias"] * scale
    return values


def merge_adaptation(model):
    """A copy of `model` (an encoder or a task model such as `BertClassifier`) with its LoRA updates or (IA)^3
    vectors folded into the frozen kernels and no adaptation variables: a plain BERT of the base's architecture.
    Outputs equal the unmerged model's up to float rounding."""
    encoder = find_encoder(model)
    if not mergeable(encoder.adapters):
        raise ValueError("merge_adaptation needs a model whose encoder was built with AdapterConfig(kind=...) of "
                         f"one of the mergeable kinds {list(MERGEABLE_KINDS)}, ungated (a gated update depends on "
                         "each input).")
    merged_encoder = BertEncoder.from_bert_config(encoder.bert_config)
    merged_encoder.pretrained = encoder.pretrained
    values = _merged_values(encoder)
    for path, variable in model_variables(merged_encoder).items():
        variable.assign(values[path])
    if model is encoder:
        return merged_encoder
    config = {k: v for k, v in model.get_config().items() if k not in ("encoder", "trainable")}
    merged = type(model)(merged_encoder, **config)
    heads = model_variables(model)
    encoder_paths = set(model_variables(merged_encoder))
    for path, variable in model_variables(merged).items():
        if path not in encoder_paths:
            variable.assign(heads[path])
    return merged


def merge_lora(model):
    """`merge_adaptation` for a LoRA model (W' = W + (alpha / r) A B); refuses other kinds."""
    encoder = find_encoder(model)
    if encoder.adapters is None or encoder.adapters.kind != "lora":
        raise ValueError("merge_lora needs a model whose encoder was built with AdapterConfig(kind='lora').")
    return merge_adaptation(model)


def _identity_assignments(encoder, layers: Optional[Iterable[int]]):
    """(variable, value) pairs whose assignment turns the adaptation of the given layers into the identity: zero
    output projections (bottleneck adapters, PALs, LoRA's B), unit vectors ((IA)^3)."""
    config = encoder.adapters
    if config is None:
        raise ValueError("This encoder has no adapters to ablate.")
    wanted = set(range(encoder.bert_config.num_hidden_layers)) if layers is None else set(layers)
    patterns = {
        "lora": r"transformer_layer_(\d+)/self_attention/\w+_lora/lora_b",
        "pal": r"transformer_layer_(\d+)/attention_adapter/pal_attention/attention_output/(kernel|bias)",
        "ia3": r"transformer_layer_(\d+)/(self_attention/)?\w+_ia3/scale",
        # a stack's or fusion's members (their deltas zero: the slot passes its input through)
        "stack": r"transformer_layer_(\d+)/(attention|output)_adapter/\w+/up/(kernel|bias)",
        "fuse": r"transformer_layer_(\d+)/(attention|output)_adapter/\w+/up/(kernel|bias)",
    }.get(config.kind, r"transformer_layer_(\d+)/(attention|output)_adapter/up/(kernel|bias)")
    if config.kind == "union":
        raise ValueError("A union of adaptations (MAM, UniPELT) is not ablated as a whole here: ablate its kinds one "
                         "at a time in encoders built with each.")
    if config.kind in ("prefix", "prompt"):
        raise ValueError(f"{config.kind.capitalize()} tuning has no identity setting of its weights (its positions "
                         "take part in every softmax): build the encoder without it.")
    if config.kind == "pal" and config.pal_share == "all":
        raise ValueError("PALs shared across all layers (pal_share='all') cannot be ablated layer by layer.")
    identity = np.ones if config.kind == "ia3" else np.zeros
    return [(v, identity(v.shape, dtype="float32")) for p, v in model_variables(encoder).items()
            if (m := re.fullmatch(patterns, p)) and int(m.group(1)) in wanted]


@contextlib.contextmanager
def ablate_adapters(model, layers: Optional[Iterable[int]] = None):
    """Within the block, the adapters (or LoRA updates, PALs, (IA)^3 vectors) of `layers` (None = all) are the
    identity.

    Houlsby et al. (2019, sec. 3.6) remove trained adapters from chosen layers and re-evaluate without retraining;
    this does that by zeroing their output projections (setting (IA)^3 vectors to one), and restores the trained
    values on exit.
    """
    assignments = _identity_assignments(find_encoder(model), layers)
    saved = [np.asarray(v).copy() for v, _ in assignments]
    try:
        for variable, value in assignments:
            variable.assign(value)
        yield model
    finally:
        for (variable, _), value in zip(assignments, saved):
            variable.assign(value)
