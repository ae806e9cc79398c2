"""`TokenGate`: UniPELT's gating of a parameter-efficient module (Mao et al. 2022, "UniPELT"; AdapterHub's
`use_gating`): g = mean over the tokens of sigmoid(x W_g + b_g), one value (or one per output) per example, which
scales the module's contribution (an adapter's bottleneck output, a LoRA update, prefix keys and values), so the
model learns how much of each module to use for an input."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.layers.token_dense import TokenDense


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TokenGate(keras.layers.Layer):
    """g [B, outputs] = mean over the real tokens of sigmoid(x W + b) (AdapterHub averages over every position,
    padding included; here padding does not change the gate, so outputs stay padding-invariant).

    Args:
        outputs: gate values per example (1; 2 for prefix keys and values).

    Call args:
        x: [B, T, H]; mask: 0/1 [B, T] (which tokens are real) or [B, T', T] (any query's keys), or None.

    Variables: `kernel` [H, outputs] ~ N(0, 0.02) (BERT's initialisation, as AdapterHub's), `bias` [outputs] = 0, so
    every gate starts at 0.5.
    """

    def __init__(self, outputs=1, **kwargs):
        super().__init__(**kwargs)
        self.outputs = outputs
        self.dense = TokenDense(outputs, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                name="dense", dtype=self.dtype_policy)

    def build(self, x_shape, mask_shape=None):
        self.dense.build(x_shape)
        self.built = True

    def call(self, x, mask=None):
        values = ops.sigmoid(self.dense(x))  # [B, T, outputs]
        if mask is None:
            return ops.mean(values, axis=1)
        mask = ops.cast(mask if len(mask.shape) == 2 else ops.max(mask, axis=1), values.dtype)[:, :, None]  # [B,T,1]
        return ops.sum(values * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)  # [B, outputs]

    def compute_output_shape(self, x_shape, mask_shape=None):
        return (x_shape[0], self.outputs)

    def get_config(self):
        config = super().get_config()
        config["outputs"] = self.outputs
        return config
