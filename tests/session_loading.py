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


def functions_kept_whole(path: str) -> list:
    """Names of the SavedModel's functions marked `_noinline` (export.classifier_module.KEPT_WHOLE: the model's
    graph, a multi-task export's packing per task; a session optimises each once instead of inlining a copy at every
    call site)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(f"{path}/saved_model.pb", "rb") as f:
        saved.ParseFromString(f.read())
    library = saved.meta_graphs[0].graph_def.library
    return [f.signature.name for f in library.function if f.attr["_noinline"].b]
