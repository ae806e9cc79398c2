"""The base of the task models: a `keras.Model` that trains under every tf.distribute strategy (its symbolic build
works under MultiWorkerMirroredStrategy: `keras_compat.LocalReplicaSymbolicBuild`), takes auxiliary losses, states
which variables are its head and (de)serialises its encoder."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tfx_transfer.keras_compat import LocalReplicaSymbolicBuild


def replica_mean(total, count):
    """This replica's share of a mean over the global batch: `total / count` with `count` summed over the replicas
    of the tf.distribute strategy, so that the replicas' losses (and the gradients, which the strategy sums) add up
    to the global batch's sum(total) / sum(count). Keras divides a compiled loss by the number of replicas, which
    is this only when every replica holds as many counted items; a mean over labelled tokens needs the exact form.
    Outside a multi-replica strategy: total / max(count, 1). total, count: float scalars."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return total / ops.maximum(count, 1.0)


def replica_share(value):
    """`value` / the number of replicas in sync: this replica's share of a loss every replica computes whole (a
    regulariser of the weights) or as its local mean, so that the strategy's sum of gradients counts it once."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    return value / replicas if replicas > 1 else value


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
        """The weighted sum of the auxiliary losses on inputs `x` (0 when not training or none is set); under a
        multi-replica strategy this replica's share (`replica_share`)."""
        total = 0.0
        if training:
            for _, loss_fn, weight in self.__dict__.get("_auxiliary_losses", ()):
                total = total + weight * loss_fn(x, training=True)
        return replica_share(total)

    def extra_losses(self, x, training=True):
        """What a model with a built-in loss adds to its task loss: the auxiliary losses and the layers' own losses
        (`self.losses`: regularisers), as this replica's share."""
        extra = self.auxiliary_loss(x, training)
        return extra + replica_share(ops.sum(self.losses)) if self.losses else extra

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return loss + self.auxiliary_loss(x, training)



class TaskModel(LocalReplicaSymbolicBuild, AuxiliaryLosses, keras.Model):
    """`keras.Model` with a multi-worker-safe symbolic build (`keras_compat.LocalReplicaSymbolicBuild`) and
    auxiliary losses.

    The head contract every task model states:
        head_patterns: regexes of the head's variable paths (what stays newly initialised when a checkpoint
            has no such head, what sequential adaptation re-initialises).
        loads_producer_heads: the head computes what the producers' task heads compute (google-research/bert's
            output_weights, Hugging Face's classifier / qa_outputs, Model Garden's and keras-hub's heads), so a
            fine-tuned checkpoint's head loads into it.
    """

    head_patterns: tuple = ()
    loads_producer_heads: bool = False

    def config_with_encoder(self, **fields) -> dict:
        """`get_config` of a task model: name, trainable, the serialised encoder, and the model's own `fields`."""
        return {"name": self.name, "trainable": self.trainable,
                "encoder": keras.saving.serialize_keras_object(self.encoder), **fields}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
