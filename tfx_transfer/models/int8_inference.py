"""int8 CPU inference for any task model with a from-scratch encoder: `quantize_projections(model)` prepares the
token projections (query, key, value, attention output, intermediate, output: all the encoder's weight matmuls),
and functions traced under `int8_projections()` compute them as oneDNN int8 products (layers/int8_matmul.py).

    quantize_projections(model)            # again after the weights change: re-quantised in place
    with int8_projections():
        forward = tf.function(lambda inputs: model(inputs, training=False))
        forward.get_concrete_function(spec)

Embeddings, LayerNorms, attention scores, adapters (their small bottleneck projections would cost more per call to
quantise than they save), LoRA/IA3 updates and the heads stay float32, and so does every function traced outside
the context (training steps, exports). jobs/trainer.predict(int8=True) does both steps.
"""

from __future__ import annotations

from absl import logging

from tfx_transfer.layers.attention import MultiHeadSelfAttention
from tfx_transfer.layers.int8_matmul import int8_kernels_available
from tfx_transfer.layers.token_dense import int8_projections
from tfx_transfer.layers.transformer_block import TransformerBlock

__all__ = ["quantize_projections", "int8_projections", "int8_kernels_available"]

UNAVAILABLE = ("int8 inference needs TensorFlow's oneDNN int8 kernels: an x86-64 CPU with oneDNN on "
               "(TF_ENABLE_ONEDNN_OPTS=1, the default once tfx_transfer is imported before TensorFlow).")


def quantize_projections(model) -> int:
    """Quantises the encoder's projections (`encoder_projections`) from their current float kernels; returns how
    many.

    Raises:
        ValueError: no oneDNN int8 kernels in this process, or no projections to quantise (a black-box Hub
            encoder: unwrap it with BertEncoder.from_hub)."""
    if not int8_kernels_available():
        raise ValueError(UNAVAILABLE)
    projections = encoder_projections(model)
    if not projections:
        raise ValueError("int8 inference: the model has no token projections to quantise (a black-box Hub encoder? "
                         "unwrap it with BertEncoder.from_hub).")
    for layer in projections:
        layer.quantize_for_inference()
    logging.info("int8 inference: %d token projections quantised.", len(projections))
    return len(projections)


def encoder_projections(model):
    """The TokenDense layers of every transformer block in `model`: query, key, value, attention output,
    intermediate and output (6 per layer), in model order."""
    projections = []
    for layer in model._flatten_layers():
        if isinstance(layer, MultiHeadSelfAttention) and layer.built:
            projections += [getattr(layer, name) for name in ("query", "key", "value", "attention_output")]
        elif isinstance(layer, TransformerBlock):
            projections += [layer.intermediate, layer.output_dense]
    return projections
