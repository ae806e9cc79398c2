"""Regularisation toward the pretrained weights: L2-SP and EWC, as Keras weight regularisers.

    anchors = apply_l2sp(model, coefficient=0.01)          # after loading the pretrained weights, before fit
    fisher = estimate_fisher(mlm_loss_fn(encoder, head, ...), batches, encoder.trainable_variables)
    apply_ewc(model, fisher, coefficient=100.0)

Both set `variable.regularizer`, so Keras adds the penalty to the training loss (`model.losses`) at every step,
whatever the optimizer. The anchor w0 is a non-trainable copy of the weights taken when the function is called.

- L2-SP (Li, Grandvalet & Davoine 2018): alpha/2 * sum ||w - w0||^2 over the pretrained variables (the new head is
  not pulled anywhere). With AdamW, weight decay pulls the same weights toward 0 instead: the scripts turn the
  decay off for `--l2sp` unless `--weight_decay` is given.
- EWC (Kirkpatrick et al. 2017): lambda/2 * sum F_i (w_i - w0_i)^2, F the diagonal (empirical) Fisher information
  of the source task at w0: the mean over single examples of the squared gradient of their loss. For BERT the source
  task is masked-LM (`mlm_loss_fn`).
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, Optional

import keras
import numpy as np

from tfx_transfer.encoders.bert_encoder import find_encoder
from tfx_transfer.layers.adapter_config import is_adaptation_variable
from tfx_transfer.layers.masked_lm import mask_tokens, masked_lm_loss


class _AnchoredPenalty(keras.regularizers.Regularizer):
    """coefficient/2 * sum(weight * (x - anchor)^2); `weight` None means 1."""

    def __init__(self, anchor, coefficient, importance=None):
        self.anchor = anchor
        self.coefficient = float(coefficient)
        self.importance = importance

    def __call__(self, x):
        from keras import ops

        squared = ops.square(ops.cast(x, "float32") - ops.cast(self.anchor, "float32"))
        if self.importance is not None:
            squared = squared * self.importance
        return 0.5 * self.coefficient * ops.sum(squared)

    def get_config(self):  # the anchor is data, not configuration: regularised models save without it
        return {"coefficient": self.coefficient}


class L2SP(_AnchoredPenalty):
    """alpha/2 ||w - w0||^2 (Li et al. 2018)."""


class EWC(_AnchoredPenalty):
    """lambda/2 sum F (w - w0)^2 (Kirkpatrick et al. 2017)."""


def pretrained_variables(model, pattern: Optional[str] = None):
    """The trainable variables of `model`'s encoder (adapters excluded), or those whose path matches `pattern`."""
    variables = find_encoder(model).trainable_variables if pattern is None else model.trainable_variables
    return [v for v in variables if not is_adaptation_variable(v.path)
            and (pattern is None or re.search(pattern, v.path))]


def _anchor(variable):
    import tensorflow as tf

    return tf.Variable(np.asarray(variable), trainable=False, name="anchor")


def apply_l2sp(model, coefficient: float, pattern: Optional[str] = None) -> Dict[str, object]:
    """Adds L2-SP to the pretrained variables (see `pretrained_variables`) at their current values.
    Returns {path: anchor}."""
    if coefficient <= 0:
        raise ValueError(f"L2-SP coefficient {coefficient} must be > 0.")
    anchors = {}
    for variable in pretrained_variables(model, pattern):
        anchors[variable.path] = _anchor(variable)
        variable.regularizer = L2SP(anchors[variable.path], coefficient)
    if not anchors:
        raise ValueError("L2-SP: no trainable pretrained variable to regularise (is the encoder frozen?).")
    return anchors


def apply_ewc(model, fisher: Dict[str, np.ndarray], coefficient: float) -> Dict[str, object]:
    """Adds EWC with the diagonal Fisher `fisher` ({path: array}) to those variables of `model`, anchored at their
    current values. Returns {path: anchor}."""
    import tensorflow as tf

    if coefficient <= 0:
        raise ValueError(f"EWC coefficient {coefficient} must be > 0.")
    by_path = {v.path: v for v in model.trainable_variables}
    missing = sorted(set(fisher) - set(by_path))
    if missing:
        raise ValueError(f"EWC: Fisher entries for variables the model does not train: {missing[:5]}")
    anchors = {}
    for path, values in fisher.items():
        variable = by_path[path]
        anchors[path] = _anchor(variable)
        importance = tf.Variable(np.asarray(values, np.float32), trainable=False, name="fisher")
        variable.regularizer = EWC(anchors[path], coefficient, importance)
    return anchors


def estimate_fisher(loss_fn: Callable, examples: Iterable, variables) -> Dict[str, np.ndarray]:
    """Diagonal empirical Fisher: mean over `examples` of the squared gradient of `loss_fn(example)` with respect
    to each of `variables`. Pass single examples (batch size 1): the square of a batch-mean gradient is not the
    Fisher. Returns {variable path: float32 array of the variable's shape}."""
    import tensorflow as tf

    variables = list(variables)
    totals = [np.zeros(v.shape, np.float64) for v in variables]

    @tf.function(reduce_retracing=True)
    def squared_gradients(example):
        with tf.GradientTape() as tape:
            loss = loss_fn(example)
        gradients = tape.gradient(loss, variables)
        return [tf.zeros(v.shape) if g is None else tf.square(tf.convert_to_tensor(g)) for g, v in
                zip(gradients, variables)]

    count = 0
    for example in examples:
        for total, value in zip(totals, squared_gradients(example)):
            total += value.numpy()
        count += 1
    if not count:
        raise ValueError("estimate_fisher: no examples.")
    return {v.path: (t / count).astype(np.float32) for v, t in zip(variables, totals)}


def mlm_loss_fn(encoder, head, *, mask_id: int, special_ids, rate: float = 0.15, seed: int = 0):
    """loss_fn(inputs) for `estimate_fisher` and auxiliary losses: BERT's masking of `inputs` (the encoder's
    dict), then the masked-LM cross-entropy of `head` (a `MaskedLMHead`) on the masked positions."""
    vocab_size = encoder.bert_config.vocab_size

    def loss_fn(inputs, training=False):
        import tensorflow as tf

        inputs = {key: tf.convert_to_tensor(value) for key, value in inputs.items()}
        masked, selected = mask_tokens(inputs["input_word_ids"], inputs["input_mask"], mask_id=mask_id,
                                       vocab_size=vocab_size, special_ids=special_ids, rate=rate, seed=seed)
        sequence = encoder(dict(inputs, input_word_ids=masked), training=training)["sequence_output"]
        return masked_lm_loss(head(sequence), inputs["input_word_ids"], selected)
    return loss_fn
