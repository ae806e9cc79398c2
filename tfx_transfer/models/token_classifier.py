"""Token classification (NER, part-of-speech tagging, chunking): a label for every token, from the sequence output."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES
from tfx_transfer.layers.dropout import Dropout
from tfx_transfer.models.classifier import check_num_classes
from tfx_transfer.models.task_model import TaskModel, replica_mean


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertTokenClassifier(TaskModel):
    """encoder -> sequence_output -> dropout -> dense: BERT's tagging head (Devlin et al. 2019, sec. 5.3; Hugging
    Face's `BertForTokenClassification`: dropout 0.1, kernel truncated normal stddev 0.02, zero bias).

    Args:
        encoder: any encoder speaking the dict contract. num_labels: tags C.
        dropout: dropout on the sequence output (training only). initializer_range: stddev of the head kernel.

    Inputs: the encoder's dict, int32 [B, T]. Outputs: logits [B, T, C] (float32).
    Training labels: int32 [B, T], the tag id of each labelled token and -1 (`data.tagging.IGNORED`) elsewhere
    ([CLS], [SEP], padding, non-first sub-tokens); the loss is built in (`compute_loss`: cross-entropy averaged over
    the labelled tokens of the batch, as Hugging Face's `ignore_index`), so compile without one.
    Variables of the head: `token_classifier/kernel` [H, C], `token_classifier/bias` [C] (its own name, so that a
    sentence classifier's `classifier` head never loads into it, nor the reverse).
    """

    def __init__(self, encoder, num_labels, dropout=0.1, initializer_range=0.02, name="bert_token_classifier",
                 **kwargs):
        check_num_classes(num_labels)
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        sequence = Dropout(dropout, name="head_dropout")(encoder(inputs)["sequence_output"])
        logits = keras.layers.Dense(num_labels, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=initializer_range), name="token_classifier", dtype="float32")(sequence)  # [B, T, C]
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.num_labels = num_labels
        self.dropout = dropout
        self.initializer_range = initializer_range

    head_patterns = (r"token_classifier/.*",)
    loads_producer_heads = True  # sequence -> dense(C): BertForTokenClassification's `classifier`

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return token_loss(y, y_pred) + self.extra_losses(x, training)

    def get_config(self):
        return self.config_with_encoder(num_labels=self.num_labels, dropout=self.dropout,
                                        initializer_range=self.initializer_range)


def token_loss(labels, logits):
    """Mean cross-entropy over the tokens whose label is >= 0 (of the global batch under tf.distribute:
    `replica_mean`). labels int [B, T]; logits [B, T, C]."""
    labels = ops.cast(labels, "int32")
    weights = ops.cast(labels >= 0, logits.dtype)
    per_token = keras.losses.sparse_categorical_crossentropy(ops.maximum(labels, 0), logits, from_logits=True)
    return replica_mean(ops.sum(per_token * weights), ops.sum(weights))
