"""`LoRADelta`: the low-rank update LoRA adds to a frozen projection (Hu et al. 2022)."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.layers.dropout import Dropout
from tfx_transfer.layers.gates import TokenGate
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
        gated: a `TokenGate` (UniPELT) scales the update per example; the attention computes it from the whole
            layer input (`gate_value`) and passes it to the call.

    Variables: `lora_a` [in, r], `lora_b` [r, units]; gated: `gate/dense/{kernel,bias}`.
    """

    def __init__(self, rank, units, alpha=16.0, dropout_rate=0.0, gated=False, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.units = units
        self.alpha = alpha
        self.dropout_rate = dropout_rate
        self.gated = gated
        self.dropout = Dropout(dropout_rate, name="dropout", dtype=self.dtype_policy)
        self.gate = TokenGate(1, name="gate", dtype=self.dtype_policy) if gated else None

    def build(self, input_shape):
        fan_in = input_shape[-1]
        limit = 1.0 / fan_in ** 0.5
        self.lora_a = self.add_weight(name="lora_a", shape=(fan_in, self.rank),
                                      initializer=keras.initializers.RandomUniform(-limit, limit))
        self.lora_b = self.add_weight(name="lora_b", shape=(self.rank, self.units), initializer="zeros")
        if self.gate is not None:
            self.gate.build(input_shape)
        self.built = True

    @property
    def scaling(self):
        return self.alpha / self.rank

    def call(self, x, training=None, gate=None):
        """x [B, T, in] -> [B, T, units]; `gate` [B, 1] (gated: from `gate_value`) scales each example's update."""
        x = self.dropout(x, training=training)
        delta = token_matmul(token_matmul(x, self.lora_a), self.lora_b) * self.scaling
        return delta if gate is None else delta * gate[:, :, None]

    def gate_value(self, x, mask=None):
        """The gate [B, 1] of the layer input x [B, T, in] (gated only)."""
        return self.gate(x, mask)

    def merged_kernel_delta(self):
        return ops.matmul(self.lora_a, self.lora_b) * self.scaling

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(rank=self.rank, units=self.units, alpha=self.alpha, dropout_rate=self.dropout_rate,
                      gated=self.gated)
        return config
