"""LayerNorm whose gradient is written out (Ba et al. 2016), where Keras's `LayerNormalization` on TensorFlow is
differentiated op by op.

Keras computes LayerNorm through `tf.nn.moments` and broadcasting multiplies; their automatic gradient adds the
broadcast bookkeeping (Shape / BroadcastGradientArgs / Sum / Reshape) of every multiply and a Tile and Reshape for each
mean: a LayerNorm and its gradient trace 126 ops with dynamic batch and length, each traced in Python, rewritten by
Grappler and dispatched at every step. Here they trace 64: the forward pass is Keras's, op for op (bitwise equal
outputs), and the backward pass is the closed form:

    xhat = (x - mean) * rstd,   g = dy * gamma
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),   dgamma = sum(dy * xhat),   dbeta = sum(dy)

(means over the normalised axis, sums over the others). Gradients agree with the automatic ones to float32 rounding.
"""

import keras


def _layer_norm_function(epsilon):
    """f(x [..., H], gamma [H], beta [H]) -> y, with the closed-form gradient (TensorFlow)."""
    import tensorflow as tf

    @tf.custom_gradient
    def layer_norm(x, gamma, beta):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)  # tf.nn.moments, as Keras computes it
        variance = tf.reduce_mean(tf.math.squared_difference(x, tf.stop_gradient(mean)), axis=-1, keepdims=True)
        rstd = tf.math.rsqrt(variance + epsilon)
        inv = rstd * gamma
        y = x * inv + (-mean * inv + beta)

        def gradient(dy):
            xhat = (x - mean) * rstd
            g = dy * gamma
            dx = rstd * (g - tf.reduce_mean(g, axis=-1, keepdims=True)
                         - xhat * tf.reduce_mean(g * xhat, axis=-1, keepdims=True))
            leading = list(range(dy.shape.rank - 1))
            return dx, tf.reduce_sum(dy * xhat, axis=leading), tf.reduce_sum(dy, axis=leading)

        return y, gradient

    return layer_norm


@keras.saving.register_keras_serializable(package="tfx_transfer")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` (same variables `gamma`, `beta`, config and outputs) with the closed-form
    gradient on TensorFlow when it normalises the last axis with both a scale and an offset; every other case (other
    backends, axes, `rms_scaling`) is Keras's own.

    Call args:
        inputs: float [..., H] (computed in at least float32, returned in the layer's compute dtype).

    Returns:
        [..., H].
    """

    def call(self, inputs):
        rank = len(inputs.shape)
        axes = [self.axis] if isinstance(self.axis, int) else list(self.axis)
        if keras.backend.backend() != "tensorflow" or self.rms_scaling or not (self.center and self.scale) or \
                [a % rank for a in axes] != [rank - 1]:
            return super().call(inputs)
        import tensorflow as tf

        dtype = keras.backend.result_type(inputs.dtype, "float32")  # Keras: at least float32
        x = tf.cast(inputs, dtype)
        y = _layer_norm_function(self.epsilon)(x, tf.cast(self.gamma, dtype), tf.cast(self.beta, dtype))
        return tf.cast(y, self.compute_dtype)
