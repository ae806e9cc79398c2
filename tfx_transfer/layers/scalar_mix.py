"""ELMo's scalar mix of all encoder layers (Peters et al. 2018, eq. 1)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfx_transfer")
class ScalarMix(keras.layers.Layer):
    """mix = gamma * sum_j softmax(s)_j h_j over the layers h_j [B, T, H] (Peters et al. 2018; Tenney et al. 2019).

    Trainable: `scalars` [num_layers] (initialised to 0: the mean of the layers) and `gamma` (initialised to 1).
    Call args: a list of num_layers float tensors of equal shape. Returns float [B, T, H].
    """

    def __init__(self, num_layers, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = int(num_layers)

    def build(self, input_shape):
        if len(input_shape) != self.num_layers:
            raise ValueError(f"ScalarMix expects {self.num_layers} layers, got {len(input_shape)}.")
        self.scalars = self.add_weight(shape=(self.num_layers,), initializer="zeros", name="scalars")
        self.gamma = self.add_weight(shape=(), initializer="ones", name="gamma")
        self.built = True

    def call(self, layers):
        weights = ops.softmax(self.scalars)
        return self.gamma * sum(weights[i] * layers[i] for i in range(self.num_layers))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config["num_layers"] = self.num_layers
        return config
