"""Parameterized hypercomplex multiplication (PHM) layers: Compacter's adapter projections (Mahabadi, Henderson &
Ruder 2021, "Compacter: Efficient Low-Rank Hypercomplex Adapter Layers"; Zhang et al. 2021 for PHM).

A PHM projection's kernel W [in, out] is a sum of n Kronecker products,

    W = sum_{i=1..n} A_i (x) B_i,     A_i [n, n] (the "rule"),  B_i = s_i t_i  [in/n, r] x [r, out/n] (rank r),

with the rules A shared by every Compacter layer of the encoder (the `PhmRule` layer, n^3 numbers) and each layer's
B_i low-rank, so a projection costs r (in + out) parameters (+ out for its bias) instead of in x out.

Initialisation: A ~ U(-1, 1) (AdapterHub's uniform rule initialisation), s_i and t_i Glorot-uniform, zero biases,
and in an adapter the up projection's t_i zero, so the adapter starts as the identity and every factor gets a
gradient of the order of the data's (as LoRA's B = 0). AdapterHub's default normal rule, N(0, 1e-4), makes the
kernels ~1e-6 and the factors' first gradients ~1e-14 on MiniLM: Adam then barely moves them.
"""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.layers.token_dense import token_matmul


@keras.saving.register_keras_serializable(package="tfx_transfer")
class PhmRule(keras.layers.Layer):
    """The n rule matrices A_i [n, n] that every PHM projection of an encoder shares: `rule` [n, n, n], U(-1, 1) at
    initialisation.

    Args:
        phm_dim: n.
    """

    def __init__(self, phm_dim=4, **kwargs):
        super().__init__(**kwargs)
        self.phm_dim = phm_dim

    def build(self, input_shape=None):
        n = self.phm_dim
        self.rule = self.add_weight(name="rule", shape=(n, n, n),
                                    initializer=keras.initializers.RandomUniform(-1.0, 1.0))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config["phm_dim"] = self.phm_dim
        return config


@keras.saving.register_keras_serializable(package="tfx_transfer")
class PhmDense(keras.layers.Layer):
    """A projection [..., in] -> [..., units] whose kernel is sum_i A_i (x) (s_i t_i) (see the module docstring).

    Args:
        units: out; `in` and `out` must be divisible by the rule's n.
        rule: the shared `PhmRule` (built).
        rank: r of the factors s_i [in/n, r], t_i [r, out/n].
        zero_init: start t at zero (the projection is exactly zero at initialisation).

    Variables: `w_left` [n, in/n, r], `w_right` [n, r, out/n], `bias` [out]; the rule is the `PhmRule`'s.
    """

    def __init__(self, units, rule, rank=1, zero_init=False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.rule = rule
        self.rank = rank
        self.zero_init = zero_init

    def build(self, input_shape):
        n, features = self.rule.phm_dim, input_shape[-1]
        for name, size in (("input width", features), ("output width", self.units)):
            if size % n:
                raise ValueError(f"A PHM projection's {name} {size} is not divisible by phm_dim={n}.")
        self.w_left = self.add_weight(name="w_left", shape=(n, features // n, self.rank),
                                      initializer=keras.initializers.GlorotUniform())
        self.w_right = self.add_weight(name="w_right", shape=(n, self.rank, self.units // n),
                                       initializer="zeros" if self.zero_init else keras.initializers.GlorotUniform())
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.built = True

    def kernel(self):
        """W = sum_i A_i (x) B_i: [in, out]."""
        n = self.rule.phm_dim
        factors = ops.matmul(self.w_left, self.w_right)  # B_i [n, in/n, out/n]
        blocks = ops.einsum("kij,kab->iajb", self.rule.rule, factors)  # [n, in/n, n, out/n]: row i*in/n + a, col j*..
        return ops.reshape(blocks, (n * factors.shape[1], n * factors.shape[2]))

    def call(self, x):
        return token_matmul(x, ops.cast(self.kernel(), x.dtype)) + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, rank=self.rank, zero_init=self.zero_init)
        return config
