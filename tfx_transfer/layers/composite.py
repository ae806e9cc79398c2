"""Several named bottleneck adapters in one slot of a `TransformerBlock`: AdapterHub's `Stack` and `Fuse` blocks
(`AdapterComposition` describes them; `adapter_slots` builds them).

Both are called like any slot adapter, `layer(h, sublayer_input=x, attention_mask=..., training=...)`, and return
[B, T, H] in place of the sub-layer output h. Each member is a `BottleneckAdapter` named after its adapter, so its
variables are `<slot>/<name>/{down,up}/...` and an adapter trained alone loads into it by inserting its name into the
paths (`adaptation.files.member_arrays`).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from tfx_transfer.layers.adapters import BottleneckAdapter
from tfx_transfer.layers.token_dense import TokenDense


class _Members(keras.layers.Layer):
    """Holds the member adapters as attributes (TensorFlow's SavedModel tracks a layer's sublayers through them)."""

    def __init__(self, adapters: Sequence[BottleneckAdapter], **kwargs):
        super().__init__(**kwargs)
        if not adapters:
            raise ValueError(f"{type(self).__name__} needs at least one adapter.")
        for index, adapter in enumerate(adapters):
            setattr(self, f"member_{index}", adapter)
        self.count = len(adapters)

    @property
    def adapters(self):
        return [getattr(self, f"member_{index}") for index in range(self.count)]

    def build(self, input_shape):
        for adapter in self.adapters:
            adapter.build(input_shape)
        self.built = True

    def compute_output_shape(self, h_shape, sublayer_input_shape=None, attention_mask_shape=None):
        return tuple(h_shape)

    def get_config(self):
        config = super().get_config()
        config["adapters"] = [keras.saving.serialize_keras_object(adapter) for adapter in self.adapters]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["adapters"] = [keras.saving.deserialize_keras_object(a) for a in config["adapters"]]
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfx_transfer")
class AdapterStack(_Members):
    """Adapters applied in order, each to the previous one's output (AdapterHub's `Stack`; MAD-X's language adapter
    under a task adapter, Pfeiffer et al. 2020, "MAD-X"): h_0 = h, h_k = adapter_k(h_{k-1}, x); returns h_K. The order
    matters: adapters are nonlinear in their input.

    Args:
        adapters: `BottleneckAdapter`s, named after their adapters, in order.
    """

    def call(self, h, sublayer_input=None, attention_mask=None, training=None):
        for adapter in self.adapters:
            h = adapter(h, sublayer_input=sublayer_input, attention_mask=attention_mask, training=training)
        return h


@keras.saving.register_keras_serializable(package="tfx_transfer")
class AdapterFusion(_Members):
    """AdapterFusion (Pfeiffer et al. 2021, eq. 2-4; AdapterHub's "dynamic" `BertFusion`) over N adapters in one slot:

        d_n = adapter_n's output minus its input (its bottleneck term)          # [B, T, H] each
        s = softmax_n((h W_Q + b_Q) . (d_n W_K + b_K))                          # [B, T, N]
        out = h + sum_n s_n (d_n W_V)

    h is the slot's input (the sub-layer output), so the query asks which task's knowledge each token needs.
    W_Q, W_K ~ N(0, 0.02) with zero biases; W_V starts as the identity (AdapterHub adds 1e-6 off the diagonal; exactly
    I here, so a fusion of one adapter is that adapter at initialisation) and is pulled back toward it by
    `regularization` x ||I - W_V||^2, added to the training loss. The fused adapters are usually frozen (the
    "fusion" strategy trains W_Q, W_K, W_V and the head).

    Args:
        adapters: the `BottleneckAdapter`s, named after their adapters.
        regularization: lambda of the identity pull (AdapterHub: 0.01).

    Variables: `<name>/...` per adapter, `fusion_query/{kernel,bias}`, `fusion_key/{kernel,bias}` [H, H],
    `fusion_value/kernel` [H, H] (no bias).
    """

    def __init__(self, adapters, regularization=0.01, **kwargs):
        super().__init__(adapters, **kwargs)
        self.regularization = regularization
        self._init = keras.initializers.TruncatedNormal(stddev=0.02)

    def build(self, input_shape):
        super().build(input_shape)
        hidden = input_shape[-1]
        regularizer = IdentityPull(self.regularization) if self.regularization else None
        self.query = TokenDense(hidden, kernel_initializer=self._init, name="fusion_query", dtype=self.dtype_policy)
        self.key = TokenDense(hidden, kernel_initializer=self._init, name="fusion_key", dtype=self.dtype_policy)
        self.value = TokenDense(hidden, use_bias=False, kernel_initializer="identity", kernel_regularizer=regularizer,
                                name="fusion_value", dtype=self.dtype_policy)
        for dense in (self.query, self.key, self.value):
            dense.build(input_shape)
        self.built = True

    def call(self, h, sublayer_input=None, attention_mask=None, training=None):
        deltas = ops.stack([adapter.delta(h, sublayer_input) for adapter in self.adapters], axis=2)  # [B, T, N, H]
        query = self.query(h)  # [B, T, H]
        keys = self.key(deltas)  # [B, T, N, H]
        scores = ops.softmax(ops.einsum("bth,btnh->btn", query, keys), axis=-1)  # [B, T, N]
        return h + ops.einsum("btn,btnh->bth", scores, self.value(deltas))

    def get_config(self):
        config = super().get_config()
        config["regularization"] = self.regularization
        return config


@keras.saving.register_keras_serializable(package="tfx_transfer")
class IdentityPull(keras.regularizers.Regularizer):
    """lambda x ||I - W||^2 for a square kernel W: AdapterFusion's regulariser of its value matrix."""

    def __init__(self, strength=0.01):
        self.strength = strength

    def __call__(self, kernel):
        return self.strength * ops.sum(ops.square(ops.eye(kernel.shape[0], dtype=kernel.dtype) - kernel))

    def get_config(self):
        return {"strength": self.strength}
