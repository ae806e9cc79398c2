"""`IA3Scale`: the learned rescaling vector of (IA)^3 (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning
is Better and Cheaper than In-Context Learning", sec. 3.3).

(IA)^3 ("Infused Adapter by Inhibiting and Amplifying Inner Activations") multiplies three activations of every
layer element-wise by learned vectors that start at one:

    attention = softmax(Q (l_k * K)^T / sqrt(d)) (l_v * V)          l_k, l_v in R^{d_k}, R^{d_v}
    ffn       = (l_ff * act(x W_1 + b_1)) W_2 + b_2                   l_ff in R^{d_ff}

so a layer adds d_k + d_v + d_ff parameters (MiniLM: 384 + 384 + 1,536 = 2,304; 13,824 for its 6 layers, 0.06% of
the encoder). Every vector scales either a projection's output or a projection's input, so it merges into the
frozen weights for serving: l * (x W + b) = x (W diag(l)) + l * b, and (l * h) W = h (diag(l) W)
(`adaptation.surgery.merge_adaptation`).
"""

from __future__ import annotations

import keras

IA3_TARGETS = ("key", "value", "ffn", "attention_output")
"""What an (IA)^3 vector may scale: the key and value projections' outputs, the FFN's intermediate activation (the
input of its output projection) and the attention context (the input of the attention output projection). The
paper's choice is the first three; peft's default for BERT also scales the attention context (its target
`output.dense` matches both output projections)."""


# Where each target's vector lives in a `TransformerBlock` (attention.py names `<target>_ia3`, transformer_block.py
# `intermediate_ia3`), and the projection it is folded into when merged ("ffn": the FFN's output projection reads
# the scaled intermediate activation). Paths relative to the block.
SCALE_PATHS = {"key": "self_attention/key_ia3/scale", "value": "self_attention/value_ia3/scale",
               "attention_output": "self_attention/attention_output_ia3/scale", "ffn": "intermediate_ia3/scale"}
FOLDED_INTO = {"key": "self_attention/key", "value": "self_attention/value",
               "attention_output": "self_attention/attention_output", "ffn": "output"}


def scales_input(target: str) -> bool:
    """Whether the (IA)^3 vector of `target` scales the input of a projection (merged into the kernel's rows)
    rather than its output (merged into the kernel's columns and the bias)."""
    return target in ("ffn", "attention_output")


@keras.saving.register_keras_serializable(package="tfx_transfer")
class IA3Scale(keras.layers.Layer):
    """x * l over the last axis, l [units] learned and initialised to ones (the identity).

    Call args:
        x: float [..., units].

    Returns:
        float [..., units].

    Variables: `scale` [units].
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.units:
            raise ValueError(f"IA3Scale {self.name} has {self.units} units; its input has width {input_shape[-1]}.")
        self.scale = self.add_weight(name="scale", shape=(self.units,), initializer="ones")
        self.built = True

    def call(self, x):
        return x * self.scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config
