"""The base of the task models: a `keras.Model` that trains under every tf.distribute strategy.

Keras 3.15's TensorFlow trainer builds a model before `fit` from one batch of the distributed dataset by calling
`strategy.reduce("MEAN", batch)` on the whole `(inputs, labels)` structure. MirroredStrategy accepts that;
MultiWorkerMirroredStrategy does not ("Attempt to convert a value ({'input_word_ids': PerReplica..."), so `fit`
fails on every multi-worker run. The build only needs shapes and dtypes, so we take the local replica's values
instead: no collective op, nothing for workers to agree on.
"""

from __future__ import annotations

import keras


class TaskModel(keras.Model):
    """`keras.Model` with a multi-worker-safe symbolic build (see the module docstring)."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        import tensorflow as tf

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
