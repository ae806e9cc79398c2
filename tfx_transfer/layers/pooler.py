"""BERT's pooler: a tanh dense layer on the first ([CLS]) token."""

import keras


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertPooler(keras.layers.Layer):
    """pooled = tanh(W h_[CLS] + b) (Devlin et al. 2019, sec. 3; google-research/bert `bert/pooler/dense`).

    Args:
        initializer_range: stddev of the truncated-normal kernel initializer.

    Call args:
        sequence_output: float [B, T, H].

    Returns:
        float [B, H].

    Variables (relative paths): `dense/kernel` [H, H], `dense/bias` [H].
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, input_shape):
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.dense = keras.layers.Dense(input_shape[-1], activation="tanh", kernel_initializer=init, name="dense",
                                        dtype=self.dtype_policy)
        self.dense.build((input_shape[0], input_shape[-1]))
        self.built = True

    def call(self, sequence_output):
        return self.dense(sequence_output[:, 0, :])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(initializer_range=self.initializer_range)
        return config
