"""BERT's optimiser conventions as Keras configuration."""

import keras
import numpy as np
import pytest

from tfx_transfer.adaptation.optimizers import create_optimizer
from tfx_transfer.adaptation.schedules import WarmupLinearDecay


def test_schedule_is_google_bert_formula():
    schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 50, 100, 120)]
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3 * 0.9, 1e-3 * 0.5, 0.0, 0.0], rtol=1e-6, atol=1e-12)
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupLinearDecay(1e-3, total_steps=10, warmup_steps=20)


def test_no_weight_decay_on_biases_and_layer_norms():
    dense, norm = keras.layers.Dense(3), keras.layers.LayerNormalization()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, norm(dense(inputs)))
    optimizer = create_optimizer(0.0, num_train_steps=10, weight_decay=0.5)  # lr 0: only decay could move weights
    model.compile(optimizer=optimizer, loss="mse")
    assert [optimizer._use_weight_decay(v) for v in (dense.kernel, dense.bias, norm.gamma, norm.beta)] == \
        [True, False, False, False]
    assert optimizer.global_clipnorm == 1.0 and optimizer.epsilon == 1e-6


def _train(optimizer, steps=5):
    keras.utils.set_random_seed(0)
    embedding = keras.layers.Embedding(50, 8)
    inputs = keras.Input((4,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(embedding(inputs))))
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.integers(0, 50, (16, 4)), rng.normal(size=(16, 2)), batch_size=4, epochs=steps // 4 + 1, verbose=0)
    return [np.asarray(w) for w in model.weights]


def test_fused_adamw_equals_keras_adamw():
    """Same updates as Keras's AdamW (dense and sparse embedding gradients), to float rounding."""
    from tfx_transfer.adaptation.optimizers import FusedAdamW

    kwargs = dict(learning_rate=1e-2, weight_decay=0.1, epsilon=1e-6, global_clipnorm=1.0)
    for a, b in zip(_train(keras.optimizers.AdamW(**kwargs)), _train(FusedAdamW(**kwargs))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["keras", "pytorch"])
def test_epsilon_mode_is_where_epsilon_enters_the_update(mode):
    """Two Adam steps on gradients as small as epsilon, against the formula written out: Keras's eps_hat (added to
    sqrt(v) before the bias correction) or Kingma & Ba's Algorithm 1 / torch.optim.AdamW (added to sqrt(v_hat))."""
    from tfx_transfer.adaptation.optimizers import FusedAdamW

    lr, eps, b1, b2 = 0.1, 1e-3, 0.9, 0.999
    grads = [np.array([1e-3, -2e-4, 5e-3], np.float32), np.array([3e-4, 1e-3, -1e-3], np.float32)]
    variable = keras.Variable(np.zeros(3, np.float32))
    optimizer = FusedAdamW(learning_rate=lr, weight_decay=0.0, epsilon=eps, epsilon_mode=mode)
    m = v = w = np.zeros(3, np.float64)
    for t, g in enumerate(grads, start=1):
        optimizer.apply_gradients([(g, variable)])
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        if mode == "pytorch":
            w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        else:
            w = w - lr * m_hat / (np.sqrt(v_hat) + eps / np.sqrt(1 - b2 ** t))
        np.testing.assert_allclose(np.asarray(variable), w, rtol=1e-4)  # the two modes differ by > 50% here
    assert FusedAdamW.from_config(optimizer.get_config()).epsilon_mode == mode
    with pytest.raises(ValueError, match="epsilon_mode"):
        FusedAdamW(epsilon_mode="torch")


def test_layerwise_decay_scales_updates_by_depth():
    from tfx_transfer import BertClassifier, BertEncoder
    from tfx_transfer.adaptation.optimizers import layer_depths

    model = BertClassifier(BertEncoder(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=16, max_position_embeddings=16), 2)
    depths = layer_depths([w.path for w in model.weights], 2)
    assert depths["classifier/kernel"] == 0 and depths["pooler/dense/kernel"] == 0
    assert depths["transformer_layer_1/output/kernel"] == 1 and depths["transformer_layer_0/output/kernel"] == 2
    assert depths["embeddings/word_embeddings/embeddings"] == 3
    optimizer = create_optimizer(1e-3, 10, layerwise_lr_decay=0.5, model=model)
    assert optimizer.lr_multipliers["transformer_layer_0/output/kernel"] == 0.25
    with pytest.raises(ValueError, match="need the model"):
        create_optimizer(1e-3, 10, layerwise_lr_decay=0.5)
    # One step: with SGD-like Adam first steps (|update| = lr), a layer's change is lr x its multiplier.
    before = {w.path: np.asarray(w).copy() for w in model.weights}
    model.compile(optimizer=create_optimizer(1e-3, 10, weight_decay=0.0, layerwise_lr_decay=0.5, model=model, epsilon=1e-12,
                                             global_clipnorm=None), loss="mse")
    data = {"input_word_ids": np.ones((2, 4), "int32"), "input_mask": np.ones((2, 4), "int32"),
            "input_type_ids": np.zeros((2, 4), "int32")}
    model.fit(data, np.ones((2, 2)), verbose=0)
    change = {p: np.abs(np.asarray(w) - before[p]).max() for p, w in ((w.path, w) for w in model.weights)}
    # Constant schedule at step 0 of WarmupLinearDecay without warmup: lr = 1e-3.
    assert change["classifier/bias"] == pytest.approx(1e-3, rel=1e-3)
    assert change["transformer_layer_1/output/bias"] == pytest.approx(5e-4, rel=1e-3)
    assert change["transformer_layer_0/output/bias"] == pytest.approx(2.5e-4, rel=1e-3)


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0, float("nan")])
def test_fused_clipping_equals_keras_global_norm_clipping(scale):
    """FusedAdamW clips at the global norm as Keras does, keeping sparse gradients sparse: below the limit nothing
    changes, above it everything is scaled by clip / norm, a NaN norm makes every gradient value NaN. Duplicate rows of an
    IndexedSlices count once, summed (the dense gradient's norm)."""
    import tensorflow as tf

    from keras.src.optimizers.base_optimizer import clip_by_global_norm
    from tfx_transfer.adaptation.optimizers import FusedAdamW

    rng = np.random.default_rng(0)
    dense = tf.constant(rng.normal(size=(4, 3)).astype("float32") * scale)
    sparse = tf.IndexedSlices(tf.constant(rng.normal(size=(3, 3)).astype("float32") * scale),
                              tf.constant([5, 1, 5]), tf.constant([8, 3]))
    grads = [dense, None, sparse]
    ours = FusedAdamW(learning_rate=1e-3, global_clipnorm=1.0)._clip_gradients(grads)
    keras_clipped = clip_by_global_norm([dense, tf.convert_to_tensor(sparse)], 1.0)
    assert ours[1] is None and isinstance(ours[2], tf.IndexedSlices)
    assert sorted(np.asarray(ours[2].indices).tolist()) == [1, 5]
    rows = [1, 5] if np.isnan(scale) else list(range(8))  # NaN: Keras also NaNs the absent rows (0 x NaN)
    for a, b in zip(keras_clipped, [ours[0], tf.gather(tf.convert_to_tensor(ours[2]), rows)]):
        if len(b.shape) == 2 and b.shape[0] == len(rows) and a.shape[0] == 8:
            a = tf.gather(a, rows)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    if np.isnan(scale):
        assert np.isnan(np.asarray(ours[0])).all() and np.isnan(np.asarray(ours[2].values)).all()
    if scale == 0.01:  # within the limit: the very same values
        np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(dense))


def test_fused_adamw_traces_its_step_scalars_once():
    """The per-step scalars (b1^t, b2^t, lr x wd, the schedule) are built once per apply, not once per variable:
    they were most of the traced optimizer graph (3,122 ops for MiniLM's 105 variables, 1,242 now)."""
    import tensorflow as tf

    from tfx_transfer.adaptation.optimizers import create_optimizer

    variables = [keras.Variable(np.ones((3, 2), "float32"), name=f"kernel_{i}") for i in range(20)]
    optimizer = create_optimizer(1e-3, num_train_steps=10, warmup_steps=2)
    optimizer.build(variables)
    grads = [tf.ones((3, 2)) for _ in variables]
    graph = tf.function(lambda g: optimizer.apply(g, variables)).get_concrete_function(grads).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("ResourceApplyAdam") == 20 and types.count("AssignSubVariableOp") == 20
    assert types.count("Pow") == 2  # b1^t and b2^t
    # The warmup/decay schedule (one Maximum) is evaluated for the update and for the decay, not per variable
    # (Keras: 20 times more), plus the clipping's max(norm, clip).
    assert types.count("Maximum") == 3
