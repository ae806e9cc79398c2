"""Operations on trained adaptations: LoRA merging for serving, and the adapter-ablation study of Houlsby et al.

    served = merge_lora(model)                  # same outputs, no LoRA matrices, frozen kernels updated
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


def merge_lora(model):
    """A copy of `model` (an encoder or a task model such as `BertClassifier`) with every LoRA update added into its kernel and no
    LoRA variables: W' = W + (alpha / r) A B. Outputs equal the unmerged model's up to float rounding."""
    encoder = find_encoder(model)
    if encoder.adapters is None or encoder.adapters.kind != "lora":
        raise ValueError("merge_lora needs a model whose encoder was built with AdapterConfig(kind='lora').")
    merged_encoder = BertEncoder.from_bert_config(encoder.bert_config)
    merged_encoder.pretrained = encoder.pretrained
    source = {p: np.asarray(v) for p, v in model_variables(encoder).items()}
    for path, variable in model_variables(merged_encoder).items():
        value = source[path]
        match = re.fullmatch(r"(transformer_layer_\d+/self_attention)/(\w+)/kernel", path)
        if match:
            block = encoder.get_layer(match.group(1).split("/")[0]).self_attention
            delta = block.lora.get(match.group(2))
            if delta is not None:
                value = value + np.asarray(delta.merged_kernel_delta())
        variable.assign(value)
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


def _identity_variables(encoder, layers: Optional[Iterable[int]]):
    """Variables whose zeroing turns the adaptation of the given layers into the identity."""
    config = encoder.adapters
    if config is None:
        raise ValueError("This encoder has no adapters to ablate.")
    wanted = set(range(encoder.bert_config.num_hidden_layers)) if layers is None else set(layers)
    patterns = {
        "lora": r"transformer_layer_(\d+)/self_attention/\w+_lora/lora_b",
        "pal": r"transformer_layer_(\d+)/attention_adapter/pal_attention/attention_output/(kernel|bias)",
    }.get(config.kind, r"transformer_layer_(\d+)/(attention|output)_adapter/up/(kernel|bias)")
    if config.kind == "pal" and config.pal_share == "all":
        raise ValueError("PALs shared across all layers (pal_share='all') cannot be ablated layer by layer.")
    return [v for p, v in model_variables(encoder).items()
            if (m := re.fullmatch(patterns, p)) and int(m.group(1)) in wanted]


@contextlib.contextmanager
def ablate_adapters(model, layers: Optional[Iterable[int]] = None):
    """Within the block, the adapters (or LoRA updates, PALs) of `layers` (None = all) are the identity.

    Houlsby et al. (2019, sec. 3.6) remove trained adapters from chosen layers and re-evaluate without retraining;
    this does that by zeroing their output projections, and restores the trained values on exit.
    """
    variables = _identity_variables(find_encoder(model), layers)
    saved = [np.asarray(v).copy() for v in variables]
    try:
        for variable in variables:
            variable.assign(np.zeros(variable.shape, dtype="float32"))
        yield model
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
