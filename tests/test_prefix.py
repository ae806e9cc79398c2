"""Prefix tuning (Li & Liang 2021): trainable keys and values prepended in every layer's self-attention."""

import json

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy, load_adaptation, save_adaptation
from tfx_transfer.adaptation import ablate_adapters
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.adapter_setup import adapter_config
from tfx_transfer.jobs.options import ModelOptions
from tfx_transfer.layers.attention import MultiHeadSelfAttention
from tfx_transfer.layers.transformer_block import TransformerBlock

from conftest import TINY
from layer_checks import assert_only_trainable_changed, check_layer, copy_base_weights, random_bert_inputs

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}
DIRECT = AdapterConfig(kind="prefix", prefix_length=3, prefix_projection=0)
REPARAMETERISED = AdapterConfig(kind="prefix", prefix_length=3, prefix_projection=8)


def _reference_attention(attention, x, mask, prefix):
    """numpy: softmax(q [P_k; K]^T / sqrt(d) + [0; mask bias]) [P_v; V], per head, then the output projection."""
    x, mask, prefix = np.asarray(x), np.asarray(mask, "float32"), np.asarray(prefix)
    dense = lambda layer, t: t @ np.asarray(layer.kernel) + np.asarray(layer.bias)  # noqa: E731
    q, k, v = dense(attention.query, x), dense(attention.key, x), dense(attention.value, x)  # [B, T, H]
    batch, heads, d = x.shape[0], attention.num_heads, attention.head_size
    k = np.concatenate([np.broadcast_to(prefix[0], (batch,) + prefix[0].shape), k], axis=1)
    v = np.concatenate([np.broadcast_to(prefix[1], (batch,) + prefix[1].shape), v], axis=1)
    bias = np.concatenate([np.zeros((batch, prefix.shape[1])), (1.0 - mask) * -10000.0], axis=1)  # [B, P + T]
    split = lambda t: t.reshape(batch, -1, heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(d) + bias[:, None, None, :]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ split(v)).transpose(0, 2, 1, 3).reshape(x.shape)
    return dense(attention.attention_output, context)


@pytest.mark.parametrize("config", [DIRECT, REPARAMETERISED], ids=["direct", "reparameterised"])
def test_prefix_passes_the_shared_checks(config, tmp_path):
    """Build, one fit step, .keras save/load, dropout only in training, padding invariance (prefixes are never
    masked, padded keys always are)."""
    check_layer(lambda: BertEncoder(**TINY, adapters=config), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path)


@pytest.mark.parametrize("training", [False, True], ids=["head_by_head", "batched"])
def test_attention_with_a_prefix_is_the_papers_formula(training):
    attention = MultiHeadSelfAttention(4, dropout_rate=0.0)
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
    attention.build(x.shape)
    prefix = np.random.default_rng(1).normal(size=(2, 3, 16)).astype("float32")
    ours = np.asarray(attention(x, attention_mask=mask, training=training, prefix=prefix))
    np.testing.assert_allclose(ours, _reference_attention(attention, x, mask, prefix), atol=2e-5)
    first = np.asarray(attention(x, attention_mask=mask, training=training, first_token_only=True, prefix=prefix))
    np.testing.assert_allclose(first, ours[:, :1], atol=2e-5)  # the pooled output's path sees the prefix too


def test_block_first_token_path_with_a_prefix_is_row_zero():
    block = TransformerBlock(4, 32, hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
    x = np.random.default_rng(2).normal(size=(2, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]], "int32")
    prefix = np.random.default_rng(3).normal(size=(2, 4, 16)).astype("float32")
    full = np.asarray(block(x, attention_mask=mask, prefix=prefix))
    first = np.asarray(block(x, attention_mask=mask, first_token_only=True, prefix=prefix))
    np.testing.assert_allclose(first, full[:, :1], atol=1e-5)
    assert not np.allclose(full, np.asarray(block(x, attention_mask=mask)), atol=1e-3)  # the prefix matters


def test_prefix_parameter_counts_for_minilm():
    """Direct: L x 2 x P x H. Reparameterised (Li & Liang; peft's prefix_projection): P H + (H h + h) + (h 2 L H +
    2 L H), of which only the L x 2 x P x H prefixes reach the adapter file."""
    shape = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    L, P, H, h = 6, 20, 384, 512
    for projection, expected in ((0, L * 2 * P * H), (h, P * H + H * h + h + h * 2 * L * H + 2 * L * H)):
        model = BertClassifier(BertEncoder(**shape, adapters=AdapterConfig(kind="prefix", prefix_projection=projection)),
                               2)
        report = apply_strategy(model, "adapters")
        assert report.groups["adapters"]["trainable"] == expected
        assert report.trainable == expected + 770 and report.groups["layer_norm"]["trainable"] == 0
    assert L * 2 * P * H == 92_160


@pytest.fixture(scope="module")
def trained_prefix_classifier():
    keras.utils.set_random_seed(8)
    model = BertClassifier(BertEncoder(**TINY, adapters=REPARAMETERISED), 2)
    apply_strategy(model, "adapters")
    before = {p: np.asarray(v).copy() for p, v in model_variables(model).items()}
    data = random_bert_inputs(8, 7, 60)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(data, np.arange(8) % 2, batch_size=4, epochs=2, verbose=0)
    return model, before, data


def test_prefix_training_leaves_the_base_bit_identical(trained_prefix_classifier):
    model, before, _ = trained_prefix_classifier
    trainable = {v.path for v in model.trainable_weights}
    assert {p for p in trainable if not p.startswith("classifier")} == {p for p in before if p.startswith("prefix_")}
    assert_only_trainable_changed(model, before)


def test_adapter_file_keeps_the_prefixes_and_drops_the_mlp(trained_prefix_classifier, tmp_path):
    model, _, data = trained_prefix_classifier
    path = tmp_path / "prefix.safetensors"
    metadata = save_adaptation(model, path)
    assert metadata["adapters"]["kind"] == "prefix" and metadata["adapters"]["prefix_projection"] == 0
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        names = set(f.keys())
        assert json.loads(f.metadata()["tfx_transfer"])["adapters"]["prefix_length"] == 3
    assert {n for n in names if n.startswith("prefix_")} == {"prefix_encoder/prefixes"}
    base = BertEncoder(**TINY)
    copy_base_weights(model.encoder, base)
    loaded = load_adaptation(base, path)
    assert loaded.encoder.adapters.prefix_projection == 0
    np.testing.assert_allclose(np.asarray(loaded(data)), np.asarray(model(data)), atol=1e-6)


def test_prefix_cannot_be_ablated_and_flags_build_it():
    with pytest.raises(ValueError, match="no identity setting"):
        with ablate_adapters(BertEncoder(**TINY, adapters=DIRECT)):
            pass
    assert adapter_config(ModelOptions(adaptation="adapters", adapter_kind="prefix", prefix_length=10)) == \
        AdapterConfig(kind="prefix", prefix_length=10, prefix_projection=0)
    with pytest.raises(FlagError, match="prefix_length=0"):
        adapter_config(ModelOptions(adaptation="adapters", adapter_kind="prefix", prefix_length=0))
