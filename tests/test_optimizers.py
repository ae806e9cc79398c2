"""BERT's optimiser conventions as Keras configuration."""

import keras
import numpy as np
import pytest

from tfx_transfer.adaptation.optimizers import WarmupLinearDecay, create_optimizer


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
