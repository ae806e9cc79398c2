"""Every layer through the shared checks, plus the layer-specific properties."""

import keras
import numpy as np
import pytest

from layer_checks import check_layer, random_bert_inputs
from tfx_transfer.layers import BertEmbeddings, BertPooler, MultiHeadSelfAttention, TransformerBlock, get_activation
from tfx_transfer.layers.attention import HEAD_BY_HEAD_FROM, keys_at_most

H, HEADS, VOCAB, SEQ = 16, 4, 50, 7


def _hidden_data(batch=3, seq=SEQ):
    data = random_bert_inputs(batch, seq, VOCAB)
    hidden = np.random.default_rng(2).normal(size=(batch, seq, H)).astype("float32")
    return {"x": hidden, "input_mask": data["input_mask"]}


def test_embeddings_shared_checks(tmp_path):
    check_layer(
        lambda: BertEmbeddings(VOCAB, H, max_position_embeddings=16, dropout_rate=0.2, name="embeddings"),
        {"input_word_ids": ((None,), "int32"), "input_type_ids": ((None,), "int32"), "input_mask": ((None,), "int32")},
        lambda layer, x, training: layer(x["input_word_ids"], x["input_type_ids"], training=training),
        random_bert_inputs(3, SEQ, VOCAB), tmp_path)


def test_embeddings_sum_then_layer_norm():
    layer = BertEmbeddings(VOCAB, H, max_position_embeddings=16, dropout_rate=0.0)
    ids = np.array([[3, 4, 5]], "int32")
    types = np.array([[0, 1, 1]], "int32")
    out = np.asarray(layer(ids, types))
    summed = (np.asarray(layer.word_embeddings.embeddings)[ids[0]]
              + np.asarray(layer.position_embeddings.embeddings)[:3]
              + np.asarray(layer.token_type_embeddings.embeddings)[types[0]])
    mean, var = summed.mean(-1, keepdims=True), summed.var(-1, keepdims=True)
    np.testing.assert_allclose(out[0], (summed - mean) / np.sqrt(var + 1e-12), atol=1e-5)


def test_embeddings_reject_sequences_longer_than_positions():
    layer = BertEmbeddings(VOCAB, H, max_position_embeddings=4)
    ids = np.zeros((1, 5), "int32")
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=4"):
        layer(ids, ids)


def test_attention_shared_checks(tmp_path):
    check_layer(
        lambda: MultiHeadSelfAttention(HEADS, dropout_rate=0.3, name="self_attention"),
        {"x": ((None, H), "float32"), "input_mask": ((None,), "int32")},
        lambda layer, x, training: layer(x["x"], attention_mask=x["input_mask"], training=training),
        _hidden_data(), tmp_path)


@pytest.mark.parametrize("seq", [SEQ, HEAD_BY_HEAD_FROM + 3])
def test_inference_attention_forms_agree_eager_and_traced(seq, monkeypatch):
    """Inference attends in one batch over the heads below HEAD_BY_HEAD_FROM keys and head by head from there on:
    chosen in Python when the length is static, by a cond in the graph when it is not. Eager, traced with unknown
    shapes, and the training form without dropout give the same context."""
    import tensorflow as tf

    layer = MultiHeadSelfAttention(HEADS, dropout_rate=0.0)
    data = _hidden_data(batch=2, seq=seq)
    x, mask = data["x"], data["input_mask"]
    used = []
    for method in ("_attend_batched", "_attend_head_by_head"):
        original = getattr(MultiHeadSelfAttention, method)
        monkeypatch.setattr(MultiHeadSelfAttention, method,
                            lambda self, *a, _f=original, _m=method: used.append(_m) or _f(self, *a))
    eager = np.asarray(layer(x, attention_mask=mask))
    assert used == ["_attend_head_by_head" if seq >= HEAD_BY_HEAD_FROM else "_attend_batched"]
    traced = tf.function(lambda a, m: layer(a, attention_mask=m), input_signature=[
        tf.TensorSpec([None, None, H], tf.float32), tf.TensorSpec([None, None], tf.int32)])
    np.testing.assert_allclose(np.asarray(traced(x, mask)), eager, atol=1e-5)
    assert sorted(used[1:]) == ["_attend_batched", "_attend_head_by_head"]  # both branches of the cond
    np.testing.assert_allclose(np.asarray(layer(x, attention_mask=mask, training=True)), eager, atol=1e-5)


@pytest.mark.parametrize("mask_kind", ["keys", "per_query"])
def test_attention_matches_textbook_formula(mask_kind):
    """softmax(QK^T / sqrt(d) + mask) V, per head, computed in NumPy from the layer's own kernels; the mask is
    [B, S] (padding) or [B, T, S] (padding and causal: a different mask per query)."""
    layer = MultiHeadSelfAttention(HEADS, dropout_rate=0.0)
    data = _hidden_data(batch=2)
    x, mask = data["x"], data["input_mask"]
    if mask_kind == "per_query":
        mask = mask[:, None, :] * np.tril(np.ones((SEQ, SEQ), mask.dtype))[None]  # [B, T, S]
    out = np.asarray(layer(x, attention_mask=mask))
    w = {n: (np.asarray(getattr(layer, n).kernel), np.asarray(getattr(layer, n).bias))
         for n in ("query", "key", "value", "attention_output")}
    d = H // HEADS
    proj = {n: (x @ w[n][0] + w[n][1]).reshape(2, SEQ, HEADS, d).transpose(0, 2, 1, 3) for n in ("query", "key", "value")}
    scores = proj["query"] @ proj["key"].transpose(0, 1, 3, 2) / np.sqrt(d)
    scores = np.where((mask[:, None, None, :] if mask.ndim == 2 else mask[:, None]) > 0, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ proj["value"]).transpose(0, 2, 1, 3).reshape(2, SEQ, H)
    np.testing.assert_allclose(out, context @ w["attention_output"][0] + w["attention_output"][1], atol=1e-5)


@pytest.mark.parametrize("mask_kind", ["keys", "per_query"])
def test_attention_training_and_inference_paths_agree(mask_kind):
    """Training runs all heads as one batch, inference one head at a time: same numbers without dropout."""
    layer = MultiHeadSelfAttention(HEADS, dropout_rate=0.0)
    data = _hidden_data(batch=2)
    mask = data["input_mask"]
    if mask_kind == "per_query":
        mask = mask[:, None, :] * np.tril(np.ones((SEQ, SEQ), mask.dtype))[None]
    np.testing.assert_allclose(np.asarray(layer(data["x"], attention_mask=mask, training=True)),
                               np.asarray(layer(data["x"], attention_mask=mask, training=False)), atol=1e-6)


def test_attention_inference_graph_splits_heads_without_transposes():
    """Head by head (inference from HEAD_BY_HEAD_FROM keys on) reads each head as a column block of the projections:
    one Split per projection, no Transpose and no per-head slices (slices of [B, N, T, D] made MiniLM's inference
    graph 2,800 ops where this form has 1,582). With the length unknown, the layer's graph chooses by a cond."""
    import tensorflow as tf

    layer = MultiHeadSelfAttention(HEADS, dropout_rate=0.0)
    layer.build((None, None, H))
    spec = tf.TensorSpec([None, None, H], tf.float32)
    graph = tf.function(lambda q, k, v: layer._attend_head_by_head(q, k, v, None)).get_concrete_function(
        spec, spec, spec).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("Split") == 3 and types.count("Softmax") == HEADS
    assert "Transpose" not in types and "StridedSlice" not in types

    def inference_op_types():
        return {op.type for op in tf.function(lambda x, mask: layer(x, attention_mask=mask, training=False))
                .get_concrete_function(spec, tf.TensorSpec([None, None], tf.int32)).graph.get_operations()}

    assert {"If", "StatelessIf"} & inference_op_types()
    with keys_at_most(HEAD_BY_HEAD_FROM - 1):  # a caller's bound below the threshold: the batched form alone
        assert not {"If", "StatelessIf"} & inference_op_types()


def test_attention_accepts_3d_mask_and_rejects_bad_width():
    layer = MultiHeadSelfAttention(HEADS, dropout_rate=0.0)
    data = _hidden_data(batch=2)
    mask2d = data["input_mask"]
    mask3d = np.repeat(mask2d[:, None, :], SEQ, axis=1)
    np.testing.assert_allclose(np.asarray(layer(data["x"], attention_mask=mask3d)),
                               np.asarray(layer(data["x"], attention_mask=mask2d)), atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        MultiHeadSelfAttention(3)(np.zeros((1, 2, H), "float32"))


def test_transformer_block_shared_checks(tmp_path):
    check_layer(
        lambda: TransformerBlock(HEADS, 32, hidden_act="gelu", hidden_dropout_rate=0.2, name="transformer_layer_0"),
        {"x": ((None, H), "float32"), "input_mask": ((None,), "int32")},
        lambda layer, x, training: layer(x["x"], attention_mask=x["input_mask"], training=training),
        _hidden_data(), tmp_path)


@keras.saving.register_keras_serializable(package="tfx_transfer_tests")
class Doubler(keras.layers.Layer):
    """A stand-in for an adapter: y = 2x (proves the slots are on the data path)."""

    def call(self, x, sublayer_input=None, attention_mask=None, training=None):
        return 2.0 * x


def test_transformer_block_adapter_slots_sit_before_residual_and_layer_norm(tmp_path):
    data = _hidden_data(batch=2)
    plain = TransformerBlock(HEADS, 32, hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
    plain(data["x"], attention_mask=data["input_mask"])
    slotted = TransformerBlock(HEADS, 32, hidden_dropout_rate=0.0, attention_dropout_rate=0.0,
                               attention_adapter=Doubler(), output_adapter=Doubler())
    slotted(data["x"], attention_mask=data["input_mask"])
    slotted.set_weights(plain.get_weights())

    # Reference: the block's own sub-layers, wired as documented, with the sub-layer outputs doubled.
    x, mask = data["x"], data["input_mask"]
    attention = np.asarray(plain.self_attention(x, attention_mask=mask))
    h = np.asarray(plain.self_attention_layer_norm(x + 2 * attention))
    ffn = np.asarray(plain.output_dense(get_activation("gelu")(plain.intermediate(h))))
    expected = np.asarray(plain.output_layer_norm(h + 2 * ffn))
    np.testing.assert_allclose(np.asarray(slotted(x, attention_mask=mask)), expected, atol=1e-5)
    assert not np.allclose(np.asarray(plain(x, attention_mask=mask)), expected)

    # Slots survive serialization.
    restored = TransformerBlock.from_config(slotted.get_config())
    assert isinstance(restored.attention_adapter, Doubler) and isinstance(restored.output_adapter, Doubler)


def test_pooler_shared_checks(tmp_path):
    check_layer(
        lambda: BertPooler(name="pooler"),
        {"x": ((None, H), "float32")},
        lambda layer, x, training: layer(x["x"]),
        {"x": _hidden_data()["x"]}, tmp_path, has_dropout=False, mask_input=None)


def test_pooler_is_tanh_dense_on_first_token():
    layer = BertPooler()
    x = _hidden_data()["x"]
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out, np.tanh(x[:, 0] @ np.asarray(layer.dense.kernel) + np.asarray(layer.dense.bias)),
                               atol=1e-6)


def test_gelu_variants():
    x = np.linspace(-4, 4, 17).astype("float32")
    from math import erf, sqrt, tanh, pi
    exact = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in x])
    approx = np.array([0.5 * v * (1 + tanh(sqrt(2 / pi) * (v + 0.044715 * v ** 3))) for v in x])
    np.testing.assert_allclose(np.asarray(get_activation("gelu")(x)), exact, atol=1e-6)
    np.testing.assert_allclose(np.asarray(get_activation("gelu_new")(x)), approx, atol=1e-6)
    np.testing.assert_allclose(np.asarray(get_activation("gelu_pytorch_tanh")(x)), approx, atol=1e-6)
    with pytest.raises(ValueError, match="hidden_act='mish' is not supported"):
        get_activation("mish")


@pytest.mark.parametrize("activation", [None, "gelu"])
def test_token_dense_is_keras_dense_as_one_2d_matmul(activation):
    """Same variables, outputs and gradients as keras.layers.Dense on [B, T, I] (dynamic B and T), without
    tf.tensordot's shape plumbing in the traced graph."""
    import tensorflow as tf

    from tfx_transfer.layers.token_dense import TokenDense, token_matmul

    ours, theirs = TokenDense(5, activation=activation, name="d"), keras.layers.Dense(5, activation=activation, name="d")
    ours.build((None, None, 6)), theirs.build((None, None, 6))
    for a, b in zip(theirs.weights, ours.weights):
        a.assign(np.random.default_rng(3).normal(size=a.shape).astype("float32"))
        b.assign(np.asarray(a))
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    x = tf.constant(np.random.default_rng(4).normal(size=(3, 7, 6)).astype("float32"))

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        return [y, *tape.gradient(loss, [x, *layer.trainable_variables])]

    for a, b in zip(run(theirs), run(ours)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    spec = tf.TensorSpec([None, None, 6], tf.float32)
    graph = tf.function(lambda t: ours(t)).get_concrete_function(spec).graph
    types = {op.type for op in graph.get_operations()}
    assert "MatMul" in types and "BiasAdd" in types and not {"GatherV2", "Prod", "Transpose"} & types
    assert graph.outputs[0].shape.as_list() == [None, None, 5]
    np.testing.assert_allclose(np.asarray(token_matmul(x, ours.kernel)), np.asarray(x) @ np.asarray(ours.kernel),
                               rtol=1e-5, atol=1e-5)
    flat = np.asarray(x)[:, 0]  # rank 2: Keras's own path
    np.testing.assert_allclose(np.asarray(ours(flat)), np.asarray(theirs(flat)), rtol=1e-6)


@pytest.mark.parametrize("mask_kind", ["keys", "per_query"])
@pytest.mark.parametrize("adaptation", [None, "houlsby", "parallel", "lora", "pal"])
def test_transformer_block_first_token_only_is_row_zero_of_the_full_output(mask_kind, adaptation):
    """The pooled output's path (BertEncoder): the [CLS] row alone, its query over every key, equal to row 0 of the
    full block in inference and in the batched training form (no dropout); PALs mix tokens, so that block computes
    every row and returns row 0."""
    from tfx_transfer.layers.adapter_config import AdapterConfig
    from tfx_transfer.layers.adapter_slots import block_adaptation_kwargs, shared_adaptation_layers

    config = AdapterConfig(kind=adaptation, size=4, pal_heads=2, zero_init_up=False) if adaptation else None
    extra = block_adaptation_kwargs(config, 0, 1, shared_adaptation_layers(config, H)) if config else {}
    block = TransformerBlock(HEADS, 32, hidden_dropout_rate=0.0, attention_dropout_rate=0.0, **extra)
    data = _hidden_data(batch=3)
    mask = data["input_mask"]
    if mask_kind == "per_query":
        mask = mask[:, None, :] * np.tril(np.ones((SEQ, SEQ), mask.dtype))[None] + np.eye(SEQ, dtype=mask.dtype)
        mask = np.minimum(mask, 1)
    assert block.mixes_tokens == (adaptation == "pal")
    for training in (False, True):
        full = np.asarray(block(data["x"], attention_mask=mask, training=training))
        first = np.asarray(block(data["x"], attention_mask=mask, training=training, first_token_only=True))
        assert first.shape == (3, 1, H)
        np.testing.assert_allclose(first[:, 0], full[:, 0], atol=2e-6)


def test_encoder_pooled_output_reads_the_first_token_path():
    """The pooled output is tanh(W h_[CLS] + b) of the full sequence output; the last layer runs twice, on the
    [CLS] row for the pooled output (its FFN on [B, 1, H]) and on every row for the sequence output."""
    from tfx_transfer import BertEncoder

    encoder = BertEncoder(VOCAB, hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
                          intermediate_size=32, max_position_embeddings=16)
    inputs = random_bert_inputs(2, SEQ, VOCAB)
    outputs = encoder(inputs)
    pooler = encoder.get_layer("pooler").dense
    expected = np.tanh(np.asarray(outputs["sequence_output"])[:, 0] @ np.asarray(pooler.kernel) +
                       np.asarray(pooler.bias))
    np.testing.assert_allclose(np.asarray(outputs["pooled_output"]), expected, atol=1e-6)
    intermediate, shapes = encoder.get_layer("transformer_layer_1").intermediate, []
    original = intermediate.call
    intermediate.call = lambda x, **kwargs: (shapes.append(tuple(x.shape)), original(x, **kwargs))[1]
    try:
        encoder(inputs)
    finally:
        del intermediate.call
    assert sorted(shapes) == [(2, 1, H), (2, SEQ, H)]  # the pooled path's row, the sequence output's rows


def _traced_gradient_ops(layer, shape, **call):
    """Number of ops in the traced graph of layer(x) and its gradient for x of `shape` (None = dynamic)."""
    import tensorflow as tf

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, **call) * x)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return len(tf.function(step).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph.get_operations())


@pytest.mark.parametrize("traced", [False, True])
def test_dropout_draws_keras_masks_and_gradients_bitwise(traced):
    """Same seed stream, kept units, outputs and gradients as keras.layers.Dropout, call after call, eagerly and in
    a tf.function, in fewer traced ops; inference, rate 0 and a noise_shape keep Keras's paths."""
    import tensorflow as tf

    from tfx_transfer.layers.dropout import Dropout

    x = tf.constant(np.random.default_rng(5).normal(size=(3, 7, 16)).astype("float32"))
    weights = tf.range(16, dtype=tf.float32)

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        return y, tape.gradient(loss, x)

    theirs, ours = keras.layers.Dropout(0.1, seed=7), Dropout(0.1, seed=7)
    call = tf.function(run) if traced else run
    for _ in range(3):  # the seed generators advance alike
        (y_theirs, g_theirs), (y_ours, g_ours) = call(theirs), call(ours)
        np.testing.assert_array_equal(np.asarray(y_ours), np.asarray(y_theirs))
        np.testing.assert_array_equal(np.asarray(g_ours), np.asarray(g_theirs))
        assert 0 < np.mean(np.asarray(y_ours) == 0) < 0.3
    np.testing.assert_array_equal(np.asarray(ours(x, training=False)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(Dropout(0.0)(x, training=True)), np.asarray(x))
    shaped = Dropout(0.5, noise_shape=(3, 1, 16), seed=1)(x, training=True)  # Keras's path: one mask per row
    assert np.all((np.asarray(shaped) == 0).all(axis=1) | (np.asarray(shaped) != 0).all(axis=1))
    assert Dropout.from_config(ours.get_config()).get_config() == ours.get_config()
    assert _traced_gradient_ops(Dropout(0.1, seed=1), [None, None, 16], training=True) < \
        0.85 * _traced_gradient_ops(keras.layers.Dropout(0.1, seed=1), [None, None, 16], training=True)


@pytest.mark.parametrize("shape", [(5, 16), (3, 7, 16)])
def test_layer_norm_is_keras_layer_norm_with_a_closed_form_gradient(shape):
    """Outputs bitwise equal to keras.layers.LayerNormalization's; gradients for x, gamma and beta equal to the
    automatic ones to float32 rounding; about half the traced ops; mixed bfloat16 as Keras computes it."""
    import tensorflow as tf

    from tfx_transfer.layers.layer_norm import LayerNorm

    rng = np.random.default_rng(6)
    x = tf.constant((3 * rng.normal(size=shape) + 1).astype("float32"))
    theirs, ours = keras.layers.LayerNormalization(epsilon=1e-12), LayerNorm(epsilon=1e-12)
    for layer in (theirs, ours):
        layer.build(shape)
    for a, b in zip(theirs.weights, ours.weights):
        a.assign(rng.normal(size=a.shape).astype("float32"))
        b.assign(np.asarray(a))
    probe = tf.constant(rng.normal(size=shape).astype("float32"))

    def run(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * probe * x)
        return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]

    for call in (run, tf.function(run)):
        (y_theirs, *g_theirs), (y_ours, *g_ours) = call(theirs), call(ours)
        np.testing.assert_array_equal(np.asarray(y_ours), np.asarray(y_theirs))
        for a, b in zip(g_ours, g_theirs):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * np.abs(b).max())
    assert _traced_gradient_ops(LayerNorm(), [None, None, 16]) < \
        0.6 * _traced_gradient_ops(keras.layers.LayerNormalization(), [None, None, 16])
    mixed = [cls(dtype="mixed_bfloat16") for cls in (keras.layers.LayerNormalization, LayerNorm)]
    outputs = []
    for layer in mixed:
        layer.build(shape)
        outputs.append(layer(tf.cast(x, tf.bfloat16)))
    assert outputs[1].dtype == tf.bfloat16
    np.testing.assert_array_equal(np.asarray(tf.cast(outputs[1], tf.float32)), np.asarray(tf.cast(outputs[0],
                                                                                                  tf.float32)))
    other_axis = LayerNorm(axis=0)  # Keras's own path
    other_axis.build(shape)
    np.testing.assert_allclose(np.asarray(other_axis(x)), np.asarray(tf.nn.batch_normalization(
        x, *tf.nn.moments(x, [0], keepdims=True), None, None, 1e-3)), rtol=1e-5, atol=1e-5)
