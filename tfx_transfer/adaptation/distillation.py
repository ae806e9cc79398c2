"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student trained on a teacher's (or an ensemble's) soft
targets mixed with the hard labels.

    targets = pack_targets(split.labels, teacher_probabilities)      # [N, 1 + C]
    student.compile(optimizer=..., loss=DistillationLoss(temperature=2.0, alpha=0.5))
    train on dataclasses.replace(split, labels=targets)

The teacher is given by its class probabilities on the training examples (a run's predictions, or the average of
several: `ensembling.average_probabilities`), so any teacher — a bigger model, an ensemble of seeds, a model from
another library — distils the same way, and the teacher never runs during the student's training.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfx_transfer.encoders.bert_encoder import BertEncoder


def pack_targets(labels, teacher_probabilities) -> np.ndarray:
    """[N] int labels and [N, C] teacher probabilities -> float32 [N, 1 + C] (column 0: the label)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(teacher_probabilities, np.float32)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"teacher probabilities {probabilities.shape} do not match {len(labels)} labels.")
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3) or (probabilities < 0).any():
        raise ValueError("teacher probabilities must be non-negative rows summing to 1.")
    return np.concatenate([labels.astype(np.float32)[:, None], probabilities], axis=1)


@keras.saving.register_keras_serializable(package="tfx_transfer")
class DistillationLoss(keras.losses.Loss):
    """alpha * T^2 * KL(softmax(log p_teacher / T) || softmax(z / T)) + (1 - alpha) * CE(label, softmax(z)).

    y_true: float [B, 1 + C] from `pack_targets`; y_pred: the student's logits z [B, C]. T^2 keeps the soft term's
    gradient scale independent of T (Hinton et al. 2015, sec. 2). alpha = 1: soft targets only.
    """

    def __init__(self, temperature=2.0, alpha=0.5, name="distillation", **kwargs):
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"DistillationLoss: temperature={temperature} must be > 0 and alpha={alpha} in [0, 1].")
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        logits = ops.cast(y_pred, "float32")
        labels = ops.cast(y_true[:, 0], "int32")
        teacher = y_true[:, 1:]
        t = self.temperature
        soft_teacher = ops.softmax(ops.log(ops.maximum(teacher, 1e-12)) / t, axis=-1)
        log_student = ops.log_softmax(logits / t, axis=-1)
        kl = ops.sum(soft_teacher * (ops.log(ops.maximum(soft_teacher, 1e-12)) - log_student), axis=-1)
        hard = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return self.alpha * t * t * kl + (1.0 - self.alpha) * hard

    def get_config(self):
        return {"name": self.name, "temperature": self.temperature, "alpha": self.alpha,
                "reduction": self.reduction}


def truncated_encoder(encoder, num_layers: int):
    """A student `BertEncoder` with `num_layers` of `encoder`'s layers, initialised from evenly spaced teacher
    layers (DistilBERT's "take one layer out of two"; Sanh et al. 2019) and the teacher's embeddings and pooler."""
    teacher_layers = encoder.bert_config.num_hidden_layers
    if not 1 <= num_layers <= teacher_layers:
        raise ValueError(f"student layers {num_layers} must be between 1 and the teacher's {teacher_layers}.")
    student = BertEncoder.from_bert_config(encoder.bert_config, num_hidden_layers=num_layers,
                                           adapters=encoder.adapters)
    chosen = np.linspace(0, teacher_layers - 1, num_layers).round().astype(int) if num_layers > 1 else \
        np.asarray([teacher_layers - 1])
    mapping = {f"transformer_layer_{i}/": f"transformer_layer_{j}/" for i, j in enumerate(chosen)}
    source = {v.path: v for v in encoder.weights}
    for variable in student.weights:
        path = variable.path
        for prefix, teacher_prefix in mapping.items():
            if path.startswith(prefix):
                path = teacher_prefix + path[len(prefix):]
                break
        variable.assign(source[path])
    return student, [int(j) for j in chosen]
