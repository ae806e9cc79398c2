"""Adapter layers: bottleneck adapters (sequential or parallel; dense or Compacter's PHM projections) and projected
attention layers (LoRA: lora.py).

All adapters plug into `TransformerBlock`'s slots, which call them as
`adapter(sublayer_output, sublayer_input=..., attention_mask=..., training=...)` and use what they return
in place of the sub-layer's output (before the residual add and LayerNorm).
"""

from __future__ import annotations

import keras

from tfx_transfer.layers.activations import get_activation
from tfx_transfer.layers.attention import MultiHeadSelfAttention
from tfx_transfer.layers.gates import TokenGate
from tfx_transfer.layers.phm import PhmDense
from tfx_transfer.layers.token_dense import TokenDense


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BottleneckAdapter(keras.layers.Layer):
    """Houlsby et al. (2019) bottleneck adapter: h + up(act(down(z))).

    Sequential (Houlsby, Pfeiffer): z = h, the sub-layer output, so the module is near-identity at init thanks to
    its internal skip connection. Parallel (He et al. 2022): z = the sub-layer's input and the bottleneck output is
    multiplied by `scale`: h + scale * up(act(down(x))).

    Args:
        size: bottleneck width m (d -> m -> d).
        activation: any name `tfx_transfer.config.canonical_activation` knows ("gelu" is the exact GELU).
        init_stddev: truncated-normal stddev of both kernels; biases start at zero.
        zero_init_up: zero the up-projection kernel, making the adapter exactly the identity at init.
        parallel: read the sub-layer input instead of its output.
        scale: output multiplier (parallel adapters).
        phm_rule: a shared `PhmRule` makes the projections PHM layers (Compacter, layers/phm.py) of rank `phm_rank`
            instead of dense ones; their variables are then `{down,up}/{w_left,w_right,bias}`.
        gated: scale the bottleneck output by a `TokenGate` of the adapter's input (UniPELT), variables
            `gate/dense/{kernel,bias}`; the adapter then reads every token (`mixes_tokens`).

    Call args:
        h: sub-layer output [B, T, H]; sublayer_input: [B, T, H] (parallel adapters); attention_mask ignored.

    Variables: `down/{kernel,bias}` [H, m], `up/{kernel,bias}` [m, H].
    """

    def __init__(self, size, activation="gelu", init_stddev=1e-2, zero_init_up=False, parallel=False, scale=1.0,
                 phm_rule=None, phm_rank=1, gated=False, **kwargs):
        super().__init__(**kwargs)
        self._activation_fn = get_activation(activation, "Adapter activation")
        self.size = size
        self.activation = activation
        self.init_stddev = init_stddev
        self.zero_init_up = zero_init_up
        self.parallel = parallel
        self.scale = scale
        self.phm_rule = phm_rule
        self.phm_rank = phm_rank
        self.gated = gated
        self.gate = TokenGate(1, name="gate", dtype=self.dtype_policy) if gated else None
        init = keras.initializers.TruncatedNormal(stddev=init_stddev)
        if phm_rule is not None:
            self.down = PhmDense(size, phm_rule, phm_rank, name="down", dtype=self.dtype_policy)
        else:
            self.down = TokenDense(size, kernel_initializer=init, name="down", dtype=self.dtype_policy)
        self._up_init = "zeros" if zero_init_up else init

    def build(self, input_shape):
        hidden = input_shape[-1]
        if self.phm_rule is not None:
            self.up = PhmDense(hidden, self.phm_rule, self.phm_rank, zero_init=self.zero_init_up, name="up",
                               dtype=self.dtype_policy)
        else:
            self.up = TokenDense(hidden, kernel_initializer=self._up_init, name="up", dtype=self.dtype_policy)
        self.down.build(input_shape)
        self.up.build(tuple(input_shape[:-1]) + (self.size,))
        if self.gate is not None:
            self.gate.build(input_shape)
        self.built = True

    @property
    def mixes_tokens(self) -> bool:
        """A gated adapter's output at one position depends on every token (its gate is their mean)."""
        return self.gated

    def call(self, h, sublayer_input=None, attention_mask=None, training=None):
        return h + self.delta(h, sublayer_input, attention_mask)

    def delta(self, h, sublayer_input=None, attention_mask=None):
        """What the adapter adds to h: g * scale * up(act(down(z))) [B, T, H] (AdapterFusion combines these; g the
        gate, 1 when not gated)."""
        z = sublayer_input if self.parallel else h
        if z is None:
            raise ValueError("A parallel adapter needs the sub-layer input (sublayer_input=...).")
        delta = self.up(self._activation_fn(self.down(z)))
        if self.scale != 1.0:
            delta = delta * self.scale
        if self.gate is not None:
            delta = delta * self.gate(z, attention_mask)[:, :, None]  # [B, 1, 1]
        return delta

    def compute_output_shape(self, h_shape, sublayer_input_shape=None, attention_mask_shape=None):
        return tuple(h_shape)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, activation=self.activation, init_stddev=self.init_stddev,
                      zero_init_up=self.zero_init_up, parallel=self.parallel, scale=self.scale, phm_rank=self.phm_rank,
                      gated=self.gated)
        return config


@keras.saving.register_keras_serializable(package="tfx_transfer")
class PalProjections(keras.layers.Layer):
    """The encoder V_E [H, m] and decoder V_D [m, H] of projected attention layers, shareable across layers.

    `zero_init_decode` starts V_D at zero, making the PALs exactly the identity at initialisation."""

    def __init__(self, size, init_stddev=1e-2, zero_init_decode=False, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.init_stddev = init_stddev
        self.zero_init_decode = zero_init_decode
        init = keras.initializers.TruncatedNormal(stddev=init_stddev)
        self.encode = TokenDense(size, use_bias=False, kernel_initializer=init, name="encode",
                                         dtype=self.dtype_policy)
        self._decode_init = "zeros" if zero_init_decode else init

    def build(self, input_shape):
        self.decode = TokenDense(input_shape[-1], use_bias=False, kernel_initializer=self._decode_init,
                                         name="decode", dtype=self.dtype_policy)
        self.encode.build(input_shape)
        self.decode.build(tuple(input_shape[:-1]) + (self.size,))
        self.built = True

    def call(self, x):
        return self.encode(x)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, init_stddev=self.init_stddev, zero_init_decode=self.zero_init_decode)
        return config


@keras.saving.register_keras_serializable(package="tfx_transfer")
class ProjectedAttentionAdapter(keras.layers.Layer):
    """Stickland & Murray (2019) PAL in an attention slot: h + V_D MH(V_E x), with x the sub-layer input.

    The block then computes LN(x + SA(x) + TS(x)), the paper's "BERT and PALs" layer. `projections` may be a
    `PalProjections` shared by every layer (the paper's choice); the multi-head attention is this layer's own
    unless `attention` is passed too (share everything).

    Args:
        size: projection width m. num_heads: heads of the small attention (m divisible by it).
        projections: a shared `PalProjections`, or None to own one. attention: a shared attention, or None.
        init_stddev: truncated-normal stddev of new kernels.
        zero_init_up: start an owned decoder projection at zero (exact identity at init).
    """

    mixes_tokens = True  # its attention: a block cannot compute one position's output alone (TransformerBlock)

    def __init__(self, size, num_heads=12, projections=None, attention=None, init_stddev=1e-2, zero_init_up=False,
                 **kwargs):
        super().__init__(**kwargs)
        if size % num_heads:
            raise ValueError(f"PAL size={size} is not divisible by pal_heads={num_heads}.")
        self.size = size
        self.num_heads = num_heads
        self.init_stddev = init_stddev
        self.zero_init_up = zero_init_up
        self.projections = projections or PalProjections(size, init_stddev, zero_init_up, name="pal_projections",
                                                         dtype=self.dtype_policy)
        self.attention = attention or MultiHeadSelfAttention(num_heads, dropout_rate=0.0,
                                                             initializer_range=init_stddev, name="pal_attention",
                                                             dtype=self.dtype_policy)

    def build(self, input_shape):
        if not self.projections.built:
            self.projections.build(input_shape)
        if not self.attention.built:
            self.attention.build(tuple(input_shape[:-1]) + (self.size,))
        self.built = True

    def call(self, h, sublayer_input=None, attention_mask=None, training=None):
        if sublayer_input is None:
            raise ValueError("A projected attention layer needs the sub-layer input (sublayer_input=...).")
        low = self.projections(sublayer_input)  # [B, T, m]
        low = self.attention(low, attention_mask=attention_mask, training=training)  # [B, T, m]
        return h + self.projections.decode(low)  # [B, T, H]

    def compute_output_shape(self, h_shape, sublayer_input_shape=None, attention_mask_shape=None):
        return tuple(h_shape)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, num_heads=self.num_heads, init_stddev=self.init_stddev,
                      zero_init_up=self.zero_init_up)
        return config
