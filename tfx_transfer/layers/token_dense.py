"""Dense projections of token sequences [B, T, I] -> [B, T, O] as one 2-D matmul (google-research/bert's
`reshape_to_matrix`), where Keras's `Dense` on TensorFlow goes through `tf.tensordot`; and their int8 form for
inference (`TokenDense.quantize_for_inference` + `int8_projections()`, layers/int8_matmul.py).

With the batch and length unknown (one trace for every padded shape), `tf.tensordot` builds its reshapes from
Shape / GatherV2 / Prod / ConcatV2 / Transpose ops, and their gradients add as many again: for MiniLM's training
step ~2,000 of its 5,570 ops, each traced in Python, rewritten by Grappler and dispatched at every step. Here a
projection is Reshape -> MatMul -> BiasAdd -> Reshape, which Grappler's remapper also fuses into one
`_FusedMatMul` (tensordot's broadcast add stays a separate pass). Same arithmetic: tensordot flattens to the same
[B*T, I] x [I, O] product.
"""

import contextlib
import threading

import keras
from keras import ops

from tfx_transfer.layers.int8_matmul import Int8Kernel, int8_matmul

_INT8 = threading.local()  # .active: TokenDense layers with an int8 kernel compute in int8 (int8_projections)


@contextlib.contextmanager
def int8_projections():
    """While active (in this thread), TokenDense layers that `quantize_for_inference()` prepared compute their
    products in int8: trace inference functions under it (jobs/trainer.forward_function(int8=True)). Outside it,
    and in every other trace, the same layers compute in float32 from their float kernels."""
    previous = getattr(_INT8, "active", False)
    _INT8.active = True
    try:
        yield
    finally:
        _INT8.active = previous


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
    quantised kernels, rank <= 2) are kept. After `quantize_for_inference()`, calls under `int8_projections()`
    compute the product in int8 (inference only).

    Call args:
        inputs: float [..., I].

    Returns:
        float [..., units].
    """

    int8_kernel = None  # an int8_matmul.Int8Kernel once quantize_for_inference() ran

    def quantize_for_inference(self):
        """Quantises the kernel's current values into int8 variables (per-channel weight scales; re-quantised in
        place on later calls, so traces that read them stay valid), which calls under `int8_projections()` then
        use with per-token activation ranges (layers/int8_matmul.py). The float kernel is left as it is. Needs
        `int8_matmul.int8_kernels_available()` to compute."""
        if keras.backend.backend() != "tensorflow":
            raise ValueError("TokenDense.quantize_for_inference needs the TensorFlow backend (oneDNN int8 kernels).")
        kernel = keras.ops.convert_to_numpy(self.kernel)
        if self.int8_kernel is None:
            self.int8_kernel = Int8Kernel(kernel)
        else:
            self.int8_kernel.update(kernel)

    def call(self, inputs, training=None):
        int8 = self.int8_kernel is not None and getattr(_INT8, "active", False)
        if int8 and training:
            raise ValueError(f"{self.name}: int8 projections are for inference (they have no gradient); train "
                             "outside int8_projections().")
        rank = inputs.shape.rank if hasattr(inputs.shape, "rank") else len(inputs.shape)
        if not int8 and (keras.backend.backend() != "tensorflow" or self.quantization_mode or rank is None
                         or rank <= 2):
            return super().call(inputs, training=training)
        import tensorflow as tf

        if int8:
            y = int8_matmul(inputs, self.int8_kernel)  # [N, units], N = the leading axes flattened
        else:
            y = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), self.kernel)  # [N, units]
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y if rank == 2 else _unflatten(y, inputs)
