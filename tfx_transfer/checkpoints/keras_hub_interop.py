"""keras-hub `BertBackbone` <-> tfx_transfer `BertEncoder`, in memory, with equal outputs (preset directories on
disk: `keras_hub_presets`, read by `from_pretrained`).

keras-hub's BERT always uses the tanh GELU; encoders converted from it get `hidden_act="gelu_approximate"`, and
exporting an exact-GELU encoder to keras-hub warns that its outputs will differ slightly.
"""

from __future__ import annotations

import warnings

import numpy as np

from tfx_transfer.checkpoints.keras_hub_presets import bert_config_from_keras_hub
from tfx_transfer.checkpoints.loader import load_from_reader, model_variables
from tfx_transfer.checkpoints.readers import ArrayReader
from tfx_transfer.checkpoints.tables import KERAS_HUB
from tfx_transfer.encoders.bert_encoder import BertEncoder, find_encoder


def from_keras_hub(backbone, **overrides):
    """A `BertEncoder` with the weights of a keras-hub `BertBackbone`; `load_report` says what was loaded."""
    encoder = BertEncoder.from_bert_config(bert_config_from_keras_hub(backbone.get_config()), **overrides)
    arrays = {variable.path: np.asarray(variable) for variable in backbone.weights}
    encoder.load_report = load_from_reader(encoder, ArrayReader(arrays, f"keras_hub:{backbone.name}"),
                                           KERAS_HUB.assignment_map(), "keras_hub")
    return encoder


def to_keras_hub(encoder):
    """A keras-hub `BertBackbone` with the encoder's weights (same architecture, tanh GELU)."""
    import keras_hub

    encoder = find_encoder(encoder)
    config = encoder.bert_config
    if config.hidden_act != "gelu_approximate":
        warnings.warn(f"keras-hub's BertBackbone computes tanh GELU; this encoder uses {config.hidden_act!r}, so "
                      "outputs will differ slightly (about 1e-3 on MiniLM).", stacklevel=2)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size)
    arrays = KERAS_HUB.export({p: np.asarray(v) for p, v in model_variables(encoder).items()}, config)
    targets = model_variables(backbone)
    if set(arrays) != set(targets):
        raise ValueError(f"keras-hub BertBackbone variables differ from the expected names: "
                         f"{sorted(set(arrays) ^ set(targets))[:6]}")
    for name, array in arrays.items():
        targets[name].assign(array)
    return backbone
