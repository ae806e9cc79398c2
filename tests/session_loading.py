"""Runs a SavedModel signature the way TF Serving does: the TF1 loader in a session (`saver_def`'s restore op, then
the signature's tensors by name), not `tf.saved_model.load`'s object-graph revival.

    from session_loading import session_outputs
    outputs = session_outputs(path, "serving_default", {"text": ["a good movie"]})  # {output name: ndarray}

A SavedModel whose functions read variables the restore op does not fill loads in Python but fails here with
"Could not find variable ..." (keras_compat.save_for_sessions).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def session_outputs(path: str, signature: str, inputs: dict) -> dict:
    """{output name: numpy value} of `signature` on `inputs` ({input name: list or array}), session-loaded."""
    import tensorflow_text  # noqa: F401  (the exports' tokenizer ops)

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, [tf.saved_model.SERVING], path)
        spec = meta.signature_def[signature]
        feeds = {spec.inputs[name].name: np.asarray(value) for name, value in inputs.items()}
        names = sorted(spec.outputs)
        values = session.run([spec.outputs[name].name for name in names], feeds)
    return dict(zip(names, values))
