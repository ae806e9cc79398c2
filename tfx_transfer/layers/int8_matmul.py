"""int8 projections for CPU inference: dynamic-range quantisation of a [N, I] x [I, O] product onto oneDNN's
u8 x s8 -> s32 inner product (TensorFlow's `QuantizedMatMulWithBiasAndDequantize`, which its oneDNN graph rewrite
turns into `_MklQuantizedMatMul...`).

Weights: symmetric, per output channel: W ~= Wq * scale, Wq int8 in [-127, 127], scale [O] = max|W[:, o]| / 127.
Activations: asymmetric, per row (token), computed at every call: x ~= lo + q * step, q in [0, ACTIVATION_LEVELS],
lo = min over the row, step = (max - min) / ACTIVATION_LEVELS. Then

    x @ W ~= step * (q @ Wq) * scale + lo * colsum,   colsum[o] = sum_i Wq[i, o] * scale[o],

so the oneDNN product q @ Wq (exact in int32) is the only O(N*I*O) term. The same scheme as PyTorch's dynamic
quantisation (`torch.ao.quantization.quantize_dynamic`: per-tensor there; per-channel weights here) and Keras's int8
`Dense` (per-token activations), whose int8 x int8 `tf.matmul` runs at half the float32 rate on CPU.

Why 7-bit activations: without AVX512-VNNI/AVX-VNNI, oneDNN multiplies u8 by s8 with `vpmaddubsw`, which adds each
pair of products into int16 and saturates: 255 * 127 * 2 > 32767 (measured: a 255 x 127 product over 64 inputs gives
1,048,544 instead of 2,072,640). 127 * 127 * 2 fits. PyTorch's fbgemm uses the same reduced range on x86.

The kernels exist only where TensorFlow was built with oneDNN and runs it (x86-64, TF_ENABLE_ONEDNN_OPTS=1, which
importing tfx_transfer asks for). Elsewhere TensorFlow registers a kernel that returns nothing, so callers must ask
`int8_kernels_available()` first. TensorFlow is imported when first used, as the other layers do.
"""

from __future__ import annotations

import functools

import numpy as np

ACTIVATION_LEVELS = 127  # q in [0, 127]: no int16 saturation in oneDNN's AVX2 u8 x s8 kernels (see above)
WEIGHT_LEVELS = 127  # Wq in [-127, 127]


def quantized_kernel(kernel):
    """float [I, O] -> (values int8 [I, O], scale float32 [O], column_sums float32 [O]) with
    column_sums[o] = sum_i values[i, o] * scale[o]. An all-zero column keeps scale 0 (its outputs are the bias)."""
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 2:
        raise ValueError(f"An int8 kernel is quantised from a [inputs, outputs] kernel, got shape {kernel.shape}.")
    scale = np.abs(kernel).max(axis=0) / WEIGHT_LEVELS  # [O]
    values = np.round(kernel / np.where(scale > 0, scale, 1.0)).astype(np.int8)  # [I, O], within [-127, 127]
    column_sums = (values.astype(np.float64).sum(axis=0) * scale).astype(np.float32)  # [O]
    return values, scale.astype(np.float32), column_sums


def _as_variable_values(values, scale, column_sums):
    import tensorflow as tf

    return tf.bitcast(tf.constant(values), tf.qint8), tf.constant(scale), tf.constant(column_sums)


class Int8Kernel:
    """A [I, O] kernel quantised per output channel, held in non-trainable TensorFlow variables (`values` qint8
    [I, O], `scale` float32 [O], `column_sums` float32 [O]), so traces that read them stay valid when `update`
    re-quantises new float values into them."""

    def __init__(self, kernel):
        import tensorflow as tf

        self.values, self.scale, self.column_sums = (
            tf.Variable(value, trainable=False) for value in _as_variable_values(*quantized_kernel(kernel)))

    def update(self, kernel):
        """Re-quantise `kernel` (same shape) into the variables."""
        for variable, value in zip((self.values, self.scale, self.column_sums),
                                   _as_variable_values(*quantized_kernel(kernel))):
            variable.assign(value)


def _graph_constant(key, make):
    """make(), shared by every call in the graph being traced with the same key (each constant traced costs ~0.3 ms
    of Python, and the product has 7 fixed inputs per call); eagerly, a new one."""
    import tensorflow as tf

    if tf.executing_eagerly():
        return make()
    # Kept in the graph itself, as a graph collection: a table keyed by graph would hold every traced graph alive
    # through its tensors.
    collection = tf.compat.v1.get_collection_ref("tfx_transfer_int8_tensors")
    if not collection:
        collection.append({})
    constants = collection[0]
    if key not in constants:
        constants[key] = make()
    return constants[key]


def _scalar(value: float):
    import tensorflow as tf

    return _graph_constant(("scalar", value), lambda: tf.constant(value, tf.float32))


def _product(q, values):
    """q uint8 [N, I] @ values qint8 [I, O] -> the exact int32 products as float32 [N, O] (oneDNN inner product)."""
    import tensorflow as tf

    out = int(values.shape[1])
    return tf.raw_ops.QuantizedMatMulWithBiasAndDequantize(
        a=tf.bitcast(q, tf.quint8), b=values, bias=_graph_constant(("zeros", out), lambda: tf.zeros([out])),
        min_a=_scalar(0.0), max_a=_scalar(255.0), min_b=_scalar(-127.0), max_b=_scalar(127.0),
        # dequantisation scale (255/255) * (127/127) = 1; the freezed range is unused by a float32 output
        min_freezed_output=_scalar(-1.0), max_freezed_output=_scalar(1.0),
        Toutput=tf.float32, input_quant_mode="SCALED")


def quantized_rows(x):
    """x float32 [..., I] -> its N rows (the leading axes flattened) as (q uint8 [N, I] in [0, ACTIVATION_LEVELS],
    lo [N, 1], step [N, 1]), x ~= lo + q * step row by row. Within one traced graph the same x is quantised once
    (the query, key and value projections share their input)."""
    import tensorflow as tf

    def quantise():
        rows = tf.reshape(x, [-1, x.shape[-1]])  # [N, I]
        lo = tf.reduce_min(rows, axis=1, keepdims=True)  # [N, 1]
        span = tf.maximum(tf.reduce_max(rows, axis=1, keepdims=True) - lo, _scalar(1e-12))  # [N, 1]
        q = tf.cast(tf.round((rows - lo) * (_scalar(float(ACTIVATION_LEVELS)) / span)), tf.uint8)
        return q, lo, span * _scalar(1.0 / ACTIVATION_LEVELS)

    return quantise() if tf.executing_eagerly() else _graph_constant(("rows", x.ref()), quantise)


def int8_matmul(x, kernel: Int8Kernel):
    """x float32 [..., I] @ the quantised kernel -> float32 [N, O] (no bias; N = x's leading axes flattened),
    activations quantised per row.

    Call inside a tf.function: the oneDNN rewrite that supplies the kernel runs on graphs only."""
    q, lo, step = quantized_rows(x)
    return _product(q, kernel.values) * step * kernel.scale + lo * kernel.column_sums


@functools.lru_cache(maxsize=None)
def int8_kernels_available() -> bool:
    """Whether this process computes `int8_matmul` (oneDNN's int8 kernels are registered and enabled): one small
    product is run and compared with its exact value."""
    import tensorflow as tf

    q = np.arange(2 * 4, dtype=np.uint8).reshape(2, 4)
    values = np.array([[1, -1], [2, 0], [-3, 5], [127, -127]], np.int8)
    try:
        got = tf.function(lambda q, values: _product(q, tf.bitcast(values, tf.qint8)), autograph=False)(
            tf.constant(q), tf.constant(values)).numpy()
    except tf.errors.OpError:  # no kernel registered (not an x86 oneDNN build), or the empty one ("Missing output")
        return False
    return got.shape == (2, 2) and np.array_equal(got, q.astype(np.float32) @ values.astype(np.float32))
