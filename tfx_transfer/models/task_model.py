"""The base of the task models: a `keras.Model` that trains under every tf.distribute strategy.

Keras 3.15's TensorFlow trainer builds a model before `fit` from one batch of the distributed dataset by calling
`strategy.reduce("MEAN", batch)` on the whole `(inputs, labels)` structure. MirroredStrategy accepts that;
MultiWorkerMirroredStrategy does not ("Attempt to convert a value ({'input_word_ids': PerReplica..."), so `fit`
fails on every multi-worker run. The build only needs shapes and dtypes, so we take the local replica's values
instead: no collective op, nothing for workers to agree on.
"""

from __future__ import annotations

import keras


class AuxiliaryLosses:
    """Mixin of `TaskModel`: extra training losses added to the task loss (multi-task with an unsupervised
    auxiliary task, e.g. masked-LM on the task's own text; the seeds' "language modelling is a related task").

        model.add_auxiliary_loss("mlm", loss_fn, weight=0.5, layers=[mlm_head])

    `loss_fn(inputs, training=True)` returns a scalar; it is added (x weight) in `compute_loss` while training only,
    so evaluation, prediction and exports see the task model alone. `layers` own the auxiliary variables (tracked
    by the model, trained by its optimizer).
    """

    def add_auxiliary_loss(self, name, loss_fn, weight=1.0, layers=()):
        if self.compiled:
            raise ValueError("add_auxiliary_loss: call it before compile().")
        auxiliary = self.__dict__.setdefault("_auxiliary_losses", [])
        auxiliary.append((name, loss_fn, float(weight)))
        for index, layer in enumerate(layers):
            setattr(self, f"auxiliary_{name}_{index}", layer)

    def auxiliary_loss(self, x, training=True):
        """The weighted sum of the auxiliary losses on inputs `x` (0 when not training or none is set)."""
        total = 0.0
        if training:
            for _, loss_fn, weight in self.__dict__.get("_auxiliary_losses", ()):
                total = total + weight * loss_fn(x, training=True)
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return loss + self.auxiliary_loss(x, training)



class TaskModel(AuxiliaryLosses, keras.Model):
    """`keras.Model` with a multi-worker-safe symbolic build (see the module docstring) and auxiliary losses.

    The head contract every task model states:
        head_patterns: regexes of the head's variable paths (what stays newly initialised when a checkpoint
            has no such head, what sequential adaptation re-initialises).
        loads_producer_heads: the head computes what the producers' task heads compute (google-research/bert's
            output_weights, Hugging Face's classifier / qa_outputs, Model Garden's and keras-hub's heads), so a
            fine-tuned checkpoint's head loads into it.
    """

    head_patterns: tuple = ()
    loads_producer_heads: bool = False

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

