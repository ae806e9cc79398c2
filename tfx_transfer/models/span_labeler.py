"""Span prediction (SQuAD): start and end logits for every token, from the sequence output."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES
from tfx_transfer.models.task_model import TaskModel, replica_mean


@keras.saving.register_keras_serializable(package="tfx_transfer")
class SplitSpanLogits(keras.layers.Layer):
    """[B, T, 2] -> (start [B, T], end [B, T])."""

    def call(self, logits):
        return logits[..., 0], logits[..., 1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]), tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertSpanLabeler(TaskModel):
    """encoder -> sequence_output -> dense(2): google-research/bert's `cls/squad/output_weights` head.

    The v2.0 null score is start_logits[:, 0] + end_logits[:, 0] (the [CLS] position).

    Args:
        encoder: any encoder speaking the dict contract. initializer_range: stddev of the head kernel.

    Inputs: the encoder's dict, int32 [B, T]. Outputs: {"start_logits": [B, T], "end_logits": [B, T]} (float32).
    Training labels: int32 [B, 2] (start, end) positions; the loss is built in (`compute_loss`), so compile without
    one: `model.compile(optimizer=...)`.
    Variables of the head: `span_logits/kernel` [H, 2], `span_logits/bias` [2].
    """

    def __init__(self, encoder, initializer_range=0.02, name="bert_span_labeler", **kwargs):
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        sequence = encoder(inputs)["sequence_output"]
        logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
                                    name="span_logits", dtype="float32")(sequence)  # [B, T, 2]
        start, end = SplitSpanLogits(name="split_logits")(logits)
        super().__init__(inputs=inputs, outputs={"start_logits": start, "end_logits": end}, name=name, **kwargs)
        self.encoder = encoder
        self.initializer_range = initializer_range

    head_patterns = (r"span_logits/.*",)
    loads_producer_heads = True  # sequence -> dense(2): run_squad.py's, BertForQuestionAnswering's, Model Garden's

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        per_example = span_loss(y, y_pred)
        return replica_mean(ops.sum(per_example), ops.cast(ops.shape(per_example)[0], per_example.dtype)) + \
            self.extra_losses(x, training)

    def get_config(self):
        return self.config_with_encoder(initializer_range=self.initializer_range)


def span_loss(labels, outputs):
    """Mean of the start and end cross-entropies; labels [B, 2] = (start, end) positions."""
    start = keras.losses.sparse_categorical_crossentropy(labels[:, 0], outputs["start_logits"], from_logits=True)
    end = keras.losses.sparse_categorical_crossentropy(labels[:, 1], outputs["end_logits"], from_logits=True)
    return (start + end) / 2.0
