"""`LoRADelta`: the low-rank update LoRA adds to a frozen projection (Hu et al. 2022)."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.layers.token_dense import token_matmul


@keras.saving.register_keras_serializable(package="tfx_transfer")
class LoRADelta(keras.layers.Layer):
    """Low-rank update of a frozen projection (Hu et al. 2022): delta(x) = (alpha / r) * dropout(x) A B.

    A [in, r] starts random (uniform +-1/sqrt(in), as PyTorch's Kaiming default), B [r, out] at zero, so the
    update starts at exactly zero. `merged_kernel_delta()` = (alpha / r) A B is what `merge_adaptation` adds to the
    frozen kernel for serving.

    Args:
        rank: r. alpha: scaling numerator. dropout_rate: dropout on the input (training only).
        units: output width (the projection's).

    Variables: `lora_a` [in, r], `lora_b` [r, units].
    """

    def __init__(self, rank, units, alpha=16.0, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.units = units
        self.alpha = alpha
        self.dropout_rate = dropout_rate
        self.dropout = keras.layers.Dropout(dropout_rate, name="dropout", dtype=self.dtype_policy)

    def build(self, input_shape):
        fan_in = input_shape[-1]
        limit = 1.0 / fan_in ** 0.5
        self.lora_a = self.add_weight(name="lora_a", shape=(fan_in, self.rank),
                                      initializer=keras.initializers.RandomUniform(-limit, limit))
        self.lora_b = self.add_weight(name="lora_b", shape=(self.rank, self.units), initializer="zeros")
        self.built = True

    @property
    def scaling(self):
        return self.alpha / self.rank

    def call(self, x, training=None):
        x = self.dropout(x, training=training)
        return token_matmul(token_matmul(x, self.lora_a), self.lora_b) * self.scaling

    def merged_kernel_delta(self):
        return ops.matmul(self.lora_a, self.lora_b) * self.scaling

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, units=self.units, alpha=self.alpha, dropout_rate=self.dropout_rate)
        return config
