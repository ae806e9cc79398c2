"""Dense projections of token sequences [B, T, I] -> [B, T, O] as one 2-D matmul (google-research/bert's
`reshape_to_matrix`), where Keras's `Dense` on TensorFlow goes through `tf.tensordot`.

With the batch and length unknown (one trace for every padded shape), `tf.tensordot` builds its reshapes from
Shape / GatherV2 / Prod / ConcatV2 / Transpose ops, and their gradients add as many again: for MiniLM's training
step ~2,000 of its 5,570 ops, each traced in Python, rewritten by Grappler and dispatched at every step. Here a
projection is Reshape -> MatMul -> BiasAdd -> Reshape, which Grappler's remapper also fuses into one
`_FusedMatMul` (tensordot's broadcast add stays a separate pass). Same arithmetic: tensordot flattens to the same
[B*T, I] x [I, O] product.
"""

import keras
from keras import ops


def token_matmul(x, kernel):
    """x [..., I] @ kernel [I, O] -> [..., O], flattening the leading axes into one 2-D matmul on TensorFlow."""
    if keras.backend.backend() != "tensorflow" or x.shape.rank is None or x.shape.rank <= 2:
        return ops.matmul(x, kernel)
    import tensorflow as tf

    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), kernel)  # [N, O]
    return _unflatten(y, x)


def _unflatten(y, like):
    """[N, O] -> like's leading axes + [O]."""
    import tensorflow as tf

    out = tf.reshape(y, tf.concat([tf.shape(like)[:-1], tf.shape(y)[-1:]], axis=0))
    out.set_shape(like.shape[:-1].concatenate(y.shape[-1:]))
    return out


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TokenDense(keras.layers.Dense):
    """`keras.layers.Dense` (same variables, names, config and results) whose call on inputs of rank > 2 is one
    2-D MatMul + BiasAdd (+ activation) between two reshapes on TensorFlow. Keras's own paths (another backend,
    quantised kernels, rank <= 2) are kept.

    Call args:
        inputs: float [..., I].

    Returns:
        float [..., units].
    """

    def call(self, inputs, training=None):
        rank = inputs.shape.rank if hasattr(inputs.shape, "rank") else len(inputs.shape)
        if keras.backend.backend() != "tensorflow" or self.quantization_mode or rank is None or rank <= 2:
            return super().call(inputs, training=training)
        import tensorflow as tf

        y = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), self.kernel)  # [N, units]
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return _unflatten(y, inputs)
