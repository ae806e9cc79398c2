"""Dropout with the same masks as Keras's, in fewer traced ops.

Keras's `Dropout` on TensorFlow calls `tf.nn.experimental.stateless_dropout`: x * scale, a uniform draw, a
`where`, plus the shape and range arithmetic of `stateless_random_uniform`; the automatic gradient of the multiply
and the `where` adds their broadcast bookkeeping: 61 traced ops for a dropout and its gradient. Here (48 ops) the
seed comes from the layer's `SeedGenerator` exactly as Keras draws it and the uniform numbers from the same kernel
(`StatelessRandomUniformV2`, key and counter from the seed, the same algorithm), so the kept units and the outputs are
bitwise Keras's; the gradient is written out: dx = where(keep, dy * scale, 0) (Srivastava et al. 2014), bitwise the
automatic one.
"""

import keras


def _dropout_function(keep, scale):
    """f(x) = where(keep, x * scale, 0) with its gradient written out (TensorFlow)."""
    import tensorflow as tf

    @tf.custom_gradient
    def dropout(x):
        zero = tf.zeros([], x.dtype)

        def gradient(dy):
            return tf.where(keep, dy * tf.cast(scale, dy.dtype), zero)

        return tf.where(keep, x * tf.cast(scale, x.dtype), zero), gradient

    return dropout


@keras.saving.register_keras_serializable(package="tfx_transfer")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` (same config, seed stream and outputs) in fewer ops on TensorFlow; a `noise_shape` or
    another backend is Keras's own.

    Call args:
        inputs: float [...]; training: drop units only when True.

    Returns:
        [...], the kept units scaled by 1 / (1 - rate).
    """

    def call(self, inputs, training=False):
        if not (training and 0.0 < self.rate < 1.0) or self.noise_shape is not None or \
                keras.backend.backend() != "tensorflow":
            return super().call(inputs, training=training)
        import tensorflow as tf

        seed = self.seed_generator.next()  # Keras's draw_seed, then its int32 cast
        if seed.dtype != tf.int32:
            seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)
        uniform = tf.raw_ops.StatelessRandomUniformV2(shape=tf.shape(inputs), key=key, counter=counter,
                                                      alg=tf.constant(3), dtype=inputs.dtype)  # 3: auto_select
        scale = 1.0 / (1.0 - self.rate)
        return _dropout_function(uniform >= tf.cast(self.rate, inputs.dtype), scale)(inputs)
