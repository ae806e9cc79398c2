"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation"): trainable key and
value vectors prepended, in every adapted layer, to the keys and values its self-attention computes from the tokens.

    head_h = softmax(q_h [P_k; K]_h^T / sqrt(d) + [0; mask bias]) [P_v; V]_h      P_k, P_v in R^{P x H}

Every query (a token's) attends to the P prefix positions as well as to the tokens; the prefixes are never masked,
have no queries and produce no outputs, so the encoder's outputs keep their [B, T, H] shape and positions. Unlike
adapters, the adapted model is not the base model at initialisation (the prefix positions take part of every
softmax from the start).

Li & Liang train the prefixes through a reparameterisation for stability, P = MLP(P'), with P' [P, H] and an MLP
H -> h -> 2 L H (tanh) shared by all layers (peft's `prefix_projection`), and keep only P after training: an
adapter file holds the prefixes themselves (`PrefixEncoder.folded`), whatever trained them.
"""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.layers.token_dense import TokenDense


@keras.saving.register_keras_serializable(package="tfx_transfer")
class PrefixEncoder(keras.layers.Layer):
    """The key and value prefixes of `num_layers` attention layers: [num_layers, 2, P, H] (index 0 keys, 1 values).

    Args:
        prefix_length: P. num_layers: the layers that get prefixes. hidden_size: H.
        projection_size: 0 = the prefixes are the weights (`prefixes` [L, 2, P, H], N(0, init_stddev)); h > 0 = Li &
            Liang's reparameterisation: `embedding` [P, H] (N(0, 1), as peft's torch Embedding) through `first`
            (H -> h, tanh) and `second` (h -> 2 L H).
        init_stddev: stddev of the direct prefixes and of the MLP kernels.

    Call args:
        x: any tensor (its value is unused: the layer has no input; Keras's functional graph needs one).

    Returns:
        float [num_layers, 2, P, H].
    """

    def __init__(self, prefix_length, num_layers, hidden_size, projection_size=0, init_stddev=0.02, **kwargs):
        super().__init__(**kwargs)
        self.prefix_length = prefix_length
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.projection_size = projection_size
        self.init_stddev = init_stddev
        init = keras.initializers.TruncatedNormal(stddev=init_stddev)
        if projection_size:
            self.first = TokenDense(projection_size, activation="tanh", kernel_initializer=init, name="first",
                                    dtype=self.dtype_policy)
            self.second = TokenDense(2 * num_layers * hidden_size, kernel_initializer=init, name="second",
                                     dtype=self.dtype_policy)

    def build(self, input_shape=None):
        shape = (self.prefix_length, self.hidden_size)
        if self.projection_size:
            self.embedding = self.add_weight(name="embedding", shape=shape,
                                             initializer=keras.initializers.RandomNormal(stddev=1.0))
            self.first.build(shape)
            self.second.build((self.prefix_length, self.projection_size))
        else:
            self.prefixes = self.add_weight(name="prefixes", shape=(self.num_layers, 2) + shape,
                                            initializer=keras.initializers.RandomNormal(stddev=self.init_stddev))
        self.built = True

    def call(self, x=None):
        if not self.projection_size:
            return ops.convert_to_tensor(self.prefixes)
        flat = self.second(self.first(self.embedding))  # [P, 2 L H]
        flat = ops.reshape(flat, (self.prefix_length, self.num_layers, 2, self.hidden_size))
        return ops.transpose(flat, (1, 2, 0, 3))  # [L, 2, P, H]

    def folded(self):
        """The prefixes [L, 2, P, H] as numbers: what an adapter file keeps (the reparameterisation is dropped)."""
        return ops.convert_to_numpy(self.call())

    def compute_output_shape(self, input_shape=None):
        return (self.num_layers, 2, self.prefix_length, self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(prefix_length=self.prefix_length, num_layers=self.num_layers, hidden_size=self.hidden_size,
                      projection_size=self.projection_size, init_stddev=self.init_stddev)
        return config


def with_prefix(keys, values, bias, prefix, gate=None):
    """keys, values [B, S, H] -> [B, P + S, H] with the layer's prefix [2, P, H] in front; the additive mask bias
    [B, 1, 1|T, S] (or None) gets P zeros in front (prefixes are never masked). `gate` [B, 2] (UniPELT) scales each
    example's prefix keys and values."""
    batch = ops.shape(keys)[0]
    prefix = ops.cast(prefix, keys.dtype)
    prefix_keys = ops.broadcast_to(prefix[0][None], (batch,) + tuple(prefix.shape[1:]))  # [B, P, H]
    prefix_values = ops.broadcast_to(prefix[1][None], (batch,) + tuple(prefix.shape[1:]))
    if gate is not None:
        gate = ops.cast(gate, keys.dtype)
        prefix_keys, prefix_values = prefix_keys * gate[:, :1, None], prefix_values * gate[:, 1:, None]
    keys = ops.concatenate([prefix_keys, keys], axis=1)
    values = ops.concatenate([prefix_values, values], axis=1)
    if bias is not None:
        zeros = ops.zeros_like(bias[..., :1])  # [B, 1, 1|T, 1]
        zeros = ops.repeat(zeros, prefix.shape[1], axis=-1)  # [B, 1, 1|T, P]
        bias = ops.concatenate([zeros, bias], axis=-1)
    return keys, values, bias
