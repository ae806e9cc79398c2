"""Reading a BERT architecture off the weights, for checkpoints and Hub modules that ship no config file.

Model Garden / TF Hub names carry everything, the number of heads included (query kernels are
[H, heads, H/heads]). google-research/bert names do not: their query kernels are [H, H]. A TF1 Hub module in that
layout still carries its own computation, so its number of heads (and its GELU) is found by running the module and
our encoder on the same probe input and keeping the configuration whose outputs agree.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from tfx_transfer.checkpoints.formats import open_checkpoint
from tfx_transfer.checkpoints.loader import load_from_reader
from tfx_transfer.checkpoints.readers import ArrayReader
from tfx_transfer.checkpoints.tables import GOOGLE
from tfx_transfer.config import BertConfig
from tfx_transfer.encoders.bert_encoder import BertEncoder


def infer_config(path: str, hidden_act: str = "gelu_approximate") -> BertConfig:
    """BertConfig of a Model Garden checkpoint (name-based or object-based) or SavedModel.

    Raises:
        ValueError: the names are not Model Garden's (a Google checkpoint needs its bert_config.json), or a needed
            tensor is missing.
    """
    fmt, reader, _ = open_checkpoint(path)
    if fmt != "model_garden":
        raise ValueError(f"{path}: the architecture of a {fmt} checkpoint cannot be read off its weights (its "
                         "attention kernels do not record the number of heads): pass its bert_config.json.")
    return infer_config_from_shapes(reader.shapes(), path, hidden_act)


def _shape_lookup(shapes, source):
    shapes = {re.sub(r":0$", "", name): tuple(shape) for name, shape in shapes.items()}

    def shape(name):
        if name not in shapes:
            raise ValueError(f"{source}: tensor {name!r} is missing; cannot infer the architecture.")
        return shapes[name]

    return shapes, shape


def infer_config_from_shapes(shapes, source: str, hidden_act: str = "gelu_approximate") -> BertConfig:
    """BertConfig from {Model Garden variable name: shape}.

    Args:
        hidden_act: not recorded in the weights; Model Garden's "gelu" is the tanh approximation.
    """
    shapes, shape = _shape_lookup(shapes, source)
    vocab_size, hidden_size = shape("word_embeddings/embeddings")
    layers = {int(m.group(1)) for name in shapes for m in [re.match(r"transformer/layer_(\d+)/", name)] if m}
    query = shape("transformer/layer_0/self_attention/query/kernel")
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=len(layers), num_attention_heads=query[1],
        intermediate_size=shape("transformer/layer_0/intermediate/kernel")[1], hidden_act=hidden_act,
        max_position_embeddings=shape("position_embedding/embeddings")[0],
        type_vocab_size=shape("type_embeddings/embeddings")[0])
    return config.validate(source=source)


def google_config_from_shapes(shapes, source: str, num_attention_heads: int,
                              hidden_act: str = "gelu_approximate") -> BertConfig:
    """BertConfig from {google-research/bert variable name: shape} and a number of heads."""
    shapes, shape = _shape_lookup(shapes, source)
    vocab_size, hidden_size = shape("bert/embeddings/word_embeddings")
    layers = {int(m.group(1)) for name in shapes for m in [re.match(r"bert/encoder/layer_(\d+)/", name)] if m}
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=len(layers),
        num_attention_heads=num_attention_heads, hidden_act=hidden_act,
        intermediate_size=shape("bert/encoder/layer_0/intermediate/dense/kernel")[1],
        max_position_embeddings=shape("bert/embeddings/position_embeddings")[0],
        type_vocab_size=shape("bert/embeddings/token_type_embeddings")[0])
    return config.validate(source=source)


def _head_counts(hidden_size: int):
    """Divisors of H, the conventional head size 64 first, then head sizes in order of distance from 64."""
    counts = [n for n in range(1, hidden_size + 1) if hidden_size % n == 0]
    return sorted(counts, key=lambda n: (abs(np.log2(hidden_size / n / 64.0)), n))


def _probe(config: BertConfig):
    rng = np.random.RandomState(0)
    length = min(12, config.max_position_embeddings)
    ids = rng.randint(0, config.vocab_size, size=(2, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, length // 2:] = 0
    types = np.zeros_like(ids)
    types[:, length // 3:] = 1 if config.type_vocab_size > 1 else 0
    return ids, mask, types


def match_tf1_hub_config(contents, atol: float = 1e-4) -> BertConfig:
    """The configuration of a TF1 Hub module with google-research/bert names whose outputs our encoder reproduces.

    Tries every head count (64-dimensional heads first) with tanh GELU (what google-research/bert computes), then
    exact GELU, on a probe batch through the module's `tokens` signature.

    Raises:
        ValueError: no configuration reproduces the module's outputs within `atol`.
    """
    import tensorflow as tf

    shapes = {name: np.shape(array) for name, array in contents.arrays.items()}
    base = google_config_from_shapes(shapes, contents.path, num_attention_heads=1)
    base = dataclasses.replace(base, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids, mask, types = _probe(base)
    signature = contents.module.signatures["tokens"]
    specs = signature.structured_input_signature[1]
    feed = {"input_ids": ids, "input_mask": mask, "segment_ids": types}
    expected = signature(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in feed.items()})
    expected = {k: expected[k].numpy() for k in ("pooled_output", "sequence_output")}
    tried = []
    for hidden_act in ("gelu_approximate", "gelu"):
        for heads in _head_counts(base.hidden_size):
            config = dataclasses.replace(base, num_attention_heads=heads, hidden_act=hidden_act)
            encoder = BertEncoder.from_bert_config(config)
            load_from_reader(encoder, ArrayReader(contents.arrays, contents.path), GOOGLE.assignment_map(),
                             "google_tf1")
            out = encoder({"input_word_ids": ids, "input_mask": mask, "input_type_ids": types})
            real = mask.astype(bool)
            diff = max(float(np.max(np.abs(np.asarray(out["pooled_output"]) - expected["pooled_output"]))),
                       float(np.max(np.abs(np.asarray(out["sequence_output"])[real]
                                           - expected["sequence_output"][real]))))
            tried.append(f"{heads} heads/{hidden_act}: {diff:.2g}")
            if diff <= atol:
                return dataclasses.replace(config, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    raise ValueError(f"{contents.path}: no BERT configuration reproduces the TF1 Hub module's outputs (max "
                     f"|difference| per configuration: {'; '.join(tried[:8])}); it is not a standard BERT.")


def saved_model_config(contents) -> BertConfig:
    """BertConfig of a SavedModel (`checkpoints.saved_models.SavedModelContents`): its assets.extra/config.json
    (our exports), Model Garden names, or a TF1 Hub module matched by its outputs."""
    if contents.config is not None:
        return BertConfig.from_dict(contents.config, source=f"{contents.path}/assets.extra/config.json")
    shapes = {name: np.shape(array) for name, array in contents.arrays.items()}
    if "word_embeddings/embeddings" in shapes:
        return infer_config_from_shapes(shapes, contents.path)
    if "bert/embeddings/word_embeddings" in shapes and contents.interface == "tf1_hub":
        return match_tf1_hub_config(contents)
    raise ValueError(f"{contents.path}: the SavedModel's variables are not a BERT encoder's (first: "
                     f"{sorted(shapes)[:4]}).")
