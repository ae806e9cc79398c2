"""In-graph checks on the raw-text inputs of serving signatures.

The signatures declare `tf.TensorSpec([None], tf.string)`, which makes TF reject non-string inputs ("expected to
be a string tensor but is a int32 tensor"), but a SavedModel signature does not enforce the rank: a [1, 2] input
would fail deep inside tokenisation with an unrelated message. These checks run first, so a client (or TF
Serving's INVALID_ARGUMENT response) sees which input is wrong and how. An empty batch ([0]) is valid and gives
empty outputs.
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf


def checked_texts(**texts: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Each named input after checking at run time that it is a vector [B] and that all have the same B.

    The rank check is `tf.ensure_shape` (an EnsureShape op that runs: the signature's [None] spec makes the static
    rank 1 whatever is fed, so `tf.debugging.assert_rank` and friends would be folded away); its message names the
    input: "Shape of tensor text [1,2] is not compatible with expected shape [?]".

    Raises (at run time): tf.errors.InvalidArgumentError naming the input.
    """
    names = list(texts)
    checked = {name: tf.ensure_shape(texts[name], [None]) for name in names}
    first = names[0]
    checks = [tf.debugging.assert_equal(tf.shape(checked[name])[0], tf.shape(checked[first])[0],
                                        message=f"inputs {first} and {name} must have the same batch size")
              for name in names[1:]]
    with tf.control_dependencies(checks):
        return {name: tf.identity(checked[name]) for name in names}
