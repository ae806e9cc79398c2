"""Sentence (pair) classification and regression on the pooled [CLS] vector."""

from __future__ import annotations

import keras

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES
from tfx_transfer.layers.dropout import Dropout
from tfx_transfer.models.task_model import TaskModel


def check_num_classes(num_classes):
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer (1 for regression).")


def reorder_classes(model, order):
    """Rearranges the output classes of `model`'s `classifier` head in place: the new class i is the old class
    `order[i]` (e.g. to put a checkpoint's labels in a task's order)."""
    import numpy as np

    layer = model.get_layer("classifier")
    order = np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(layer.units)):
        raise ValueError(f"order={order.tolist()} is not a permutation of the head's {layer.units} classes.")
    layer.kernel.assign(np.asarray(layer.kernel)[:, order])
    layer.bias.assign(np.asarray(layer.bias)[order])


def classification_logits(features, num_classes, dropout, initializer_range):
    """features [B, F] -> dropout (`head_dropout`) -> dense (`classifier`, truncated-normal kernel) -> float32
    logits [B, num_classes]: the head every classifier shares (its variable names are what checkpoints use)."""
    features = Dropout(dropout, name="head_dropout")(features)
    return keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.TruncatedNormal(
        stddev=initializer_range), name="classifier", dtype="float32")(features)


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertClassifier(TaskModel):
    """encoder -> pooled_output -> dropout -> dense: the head of google-research/bert's run_classifier.py and of
    adapter-bert (kernel init truncated normal, stddev 0.02; zero bias).

    Args:
        encoder: any encoder speaking the dict contract (`BertEncoder`, `HubEncoder`).
        num_classes: output width; 1 = regression (STS-B), the output is a score.
        dropout: dropout on the pooled vector (training only).
        initializer_range: stddev of the head kernel.

    Inputs: the encoder's dict (input_word_ids, input_mask, input_type_ids), int32 [B, T].
    Outputs: logits [B, num_classes] (float32).

    Variables of the head: `classifier/kernel` [H, C], `classifier/bias` [C].
    """

    def __init__(self, encoder, num_classes, dropout=0.1, initializer_range=0.02, name="bert_classifier", **kwargs):
        check_num_classes(num_classes)
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        logits = classification_logits(encoder(inputs)["pooled_output"], num_classes, dropout, initializer_range)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.dropout = dropout
        self.initializer_range = initializer_range

    head_patterns = (r"classifier/.*",)
    loads_producer_heads = True  # pooled [CLS] -> dense: run_classifier.py's, BertForSequenceClassification's

    def get_config(self):
        return self.config_with_encoder(num_classes=self.num_classes, dropout=self.dropout,
                                        initializer_range=self.initializer_range)
