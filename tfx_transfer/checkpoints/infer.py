"""Reading a BERT architecture off checkpoint shapes, for Hub modules that ship no config file.

Only Model Garden / TF Hub names carry the number of heads (query kernels are [H, heads, H/heads]); other
dialects need their config file.
"""

from __future__ import annotations

import re

from tfx_transfer.config import BertConfig


def infer_config(path: str, hidden_act: str = "gelu_approximate") -> BertConfig:
    """BertConfig of a Model Garden / TF Hub BERT encoder checkpoint or SavedModel (see `infer_config_from_shapes`).

    Raises:
        ValueError: the names are not Model Garden's, or a needed tensor is missing.
    """
    from tfx_transfer.checkpoints.formats import open_checkpoint

    fmt, reader, _ = open_checkpoint(path)
    if fmt != "model_garden":
        raise ValueError(f"{path}: cannot infer the architecture of a {fmt} checkpoint; pass its config file "
                         "(config.json or bert_config.json).")
    return infer_config_from_shapes(reader.shapes(), path, hidden_act)


def infer_config_from_shapes(shapes, source: str, hidden_act: str = "gelu_approximate") -> BertConfig:
    """BertConfig from {Model Garden variable name: shape}.

    Args:
        hidden_act: not recorded in the weights; Model Garden's "gelu" is the tanh approximation.
    """
    shapes = {re.sub(r":0$", "", name): tuple(shape) for name, shape in shapes.items()}

    def shape(name):
        if name not in shapes:
            raise ValueError(f"{source}: tensor {name!r} is missing; cannot infer the architecture.")
        return shapes[name]

    vocab_size, hidden_size = shape("word_embeddings/embeddings")
    layers = {int(m.group(1)) for name in shapes for m in [re.match(r"transformer/layer_(\d+)/", name)] if m}
    query = shape("transformer/layer_0/self_attention/query/kernel")
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=len(layers), num_attention_heads=query[1],
        intermediate_size=shape("transformer/layer_0/intermediate/kernel")[1], hidden_act=hidden_act,
        max_position_embeddings=shape("position_embedding/embeddings")[0],
        type_vocab_size=shape("type_embeddings/embeddings")[0])
    return config.validate(source=source)
