"""The base of the task models: a `keras.Model` that trains under every tf.distribute strategy (its symbolic build
works under MultiWorkerMirroredStrategy: `keras_compat.LocalReplicaSymbolicBuild`), takes auxiliary losses, states
which variables are its head and (de)serialises its encoder."""

from __future__ import annotations

import keras

from tfx_transfer.keras_compat import LocalReplicaSymbolicBuild


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
