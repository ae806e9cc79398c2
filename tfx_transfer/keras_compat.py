"""Every use of a private Keras API in tfx_transfer, each with what it works around. Nothing else in the package
touches Keras internals, so a Keras upgrade is checked here first.

    sublayers(layer)            Layer._flatten_layers: Keras has no public recursive iterator over nested layers
                                (keras-team/keras#4398 asked for one); `layer.layers` is one level deep.
    track_variable(layer, v)    Layer._track_variable: a Keras 3 layer only tracks variables it creates itself, so
                                the variables of a loaded TF Hub module are wrapped and registered by hand
                                (`hub.KerasLayer` does not work in Keras 3 models: tensorflow/hub#930).
    LocalReplicaSymbolicBuild   overrides Model._maybe_symbolic_build: Keras 3.15 builds a model before `fit` with
                                `strategy.reduce("MEAN", batch)` over the whole (inputs, labels) structure, which
                                MultiWorkerMirroredStrategy refuses ("Attempt to convert a value ({'input_word_ids':
                                PerReplica..."); the build only needs shapes, so the local replica's batch is used.
    average_scalar_logs_over_workers()
                                wraps keras.src.backend.tensorflow.trainer.reduce_per_replica: Keras 3 averages each
                                step's logs with `strategy.reduce("MEAN", v, axis=0)`, which fails for scalars under
                                MultiWorkerMirroredStrategy ("Invalid reduction dimension 0 for input with 0
                                dimensions"; tensorflow/tensorflow#72388), so no multi-worker `fit` step can run.
    save_model_streaming(model, path)
                                `model.save(path)` with saving_lib.is_memory_sufficient answering False: Keras 3
                                otherwise builds the whole weights.h5 in memory before zipping it into the .keras
                                file, +0.17-0.27 GiB on the peak RSS of a MiniLM fine-tuning run (four times that for
                                BERT-base); through a temporary file next to `path` the peak stays at training's.
    save_for_sessions(obj, path, signatures)
                                `tf.saved_model.save` with each Keras variable exported as the variable its traced
                                functions read. Keras 3 exports a copy instead (`object_map[self] =
                                tf.Variable(object_map[self.value])` in keras/src/backend/tensorflow/core.py): the
                                SavedModel's restore op fills variables named Variable_N while the signatures read
                                the originals ("pooler/dense/bias", ...). `tf.saved_model.load` rebinds them through
                                the object graph, so Python round trips work, but a session-based loader (TF Serving,
                                `saved_model_cli run`, `tf.compat.v1.saved_model.load`) leaves the read variables
                                unset and every request fails with "Could not find variable pooler/dense/bias"
                                (keras-team/keras#19274, #20096; tensorflow/serving#2250). Exporting the one
                                variable also keeps the variables/ file at one copy of the weights (Keras's
                                `ExportArchive` tracks the inner variables as well, which stores them twice).
"""

from __future__ import annotations

from typing import List

import keras
import tensorflow as tf


def sublayers(layer) -> List[keras.layers.Layer]:
    """Every layer nested inside `layer` (not `layer` itself), depth first."""
    return list(layer._flatten_layers(include_self=False))


def track_variable(layer, variable) -> None:
    """Registers `variable` (a `keras.Variable` created outside `layer`) as one of `layer`'s weights."""
    layer._track_variable(variable)


class LocalReplicaSymbolicBuild:
    """Mixin for `keras.Model` subclasses: the symbolic build before `fit` reads the local replica's batch instead of
    reducing the distributed batch (see the module docstring)."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, batch)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)


def average_scalar_logs_over_workers() -> None:
    """Installs the scalar-log reduction fix (see the module docstring); idempotent. Call it when a multi-worker
    strategy is created: scalars are averaged with `axis=None` (the same mean, over replicas), everything else goes
    to Keras unchanged."""
    # Private Keras module, imported only when the patch is installed: a Keras that moves it breaks multi-worker
    # runs alone, with this line in the trace.
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "_tfx_transfer_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        multi_worker = keras_tf_trainer._collective_all_reduce_multi_worker(strategy)
        if not multi_worker or reduction not in ("auto", "mean"):
            return original(values, strategy, reduction)

        def reduce(v):
            if isinstance(v, tf.distribute.DistributedValues) or isinstance(v, tf.Tensor):
                rank = v.values[0].shape.rank if isinstance(v, tf.distribute.DistributedValues) else v.shape.rank
                if rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        return keras_tf_trainer.tree.map_structure(reduce, values)

    reduce_per_replica._tfx_transfer_patch = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def save_model_streaming(model, path: str) -> None:
    """`model.save(path)` (a .keras file) writing its weights through a temporary file instead of memory."""
    from keras.src.saving import saving_lib

    is_memory_sufficient = saving_lib.is_memory_sufficient
    saving_lib.is_memory_sufficient = lambda model: False
    try:
        model.save(path)
    finally:
        saving_lib.is_memory_sufficient = is_memory_sufficient


def save_for_sessions(obj, path: str, signatures=None) -> None:
    """`tf.saved_model.save(obj, path, signatures=signatures)` whose Keras variables load in TF Serving (see the module
    docstring): during the save, a Keras variable exports its inner `tf.Variable`'s exported copy itself."""
    from keras.src.backend.tensorflow import core

    keras_export = core.Variable._export_to_saved_model_graph

    def export_the_read_variable(self, object_map, tensor_map, options, **kwargs):
        resources = self.value._export_to_saved_model_graph(object_map, tensor_map, options, **kwargs)
        object_map[self] = object_map[self.value]
        return resources

    core.Variable._export_to_saved_model_graph = export_the_read_variable
    try:
        tf.saved_model.save(obj, path, signatures=signatures)
    finally:
        core.Variable._export_to_saved_model_graph = keras_export
