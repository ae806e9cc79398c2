"""Feature extraction: a classifier on a learned scalar mix of all encoder layers, with a linear or BiLSTM head."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES
from tfx_transfer.layers.scalar_mix import ScalarMix
from tfx_transfer.models.classifier import check_num_classes, classification_logits
from tfx_transfer.models.task_model import TaskModel

FEATURE_HEADS = ("linear", "bilstm")


@keras.saving.register_keras_serializable(package="tfx_transfer")
class FeatureClassifier(TaskModel):
    """encoder_outputs -> `ScalarMix` (ELMo; Peters et al. 2018) -> head -> logits: the seeds' "features into a
    separate model". Meant for a frozen encoder (`apply_strategy(model, "feature_extraction")`), the Peters,
    Ruder & Smith (2019) "to tune or not to tune" setting.

    Heads:
        linear   masked mean over real tokens -> dropout -> dense.
        bilstm   a bidirectional LSTM (`lstm_units` each way) over the mixed token vectors, masked -> its final
                 states -> dropout -> dense (a small separate model on top of the features).

    Inputs: the encoder's dict, int32 [B, T]. Outputs: logits float32 [B, num_classes].
    Variables: `scalar_mix/{scalars,gamma}`, `bilstm/...` (bilstm head), `classifier/{kernel,bias}`.
    """

    def __init__(self, encoder, num_classes, head="linear", lstm_units=128, dropout=0.1, initializer_range=0.02,
                 name="feature_classifier", **kwargs):
        if head not in FEATURE_HEADS:
            raise ValueError(f"head={head!r}: choose one of {list(FEATURE_HEADS)}.")
        check_num_classes(num_classes)
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        layers = encoder(inputs)["encoder_outputs"]
        mixed = ScalarMix(len(layers), name="scalar_mix")(layers)
        mask = ops.cast(inputs["input_mask"], mixed.dtype)
        if head == "linear":
            summed = ops.sum(mixed * ops.expand_dims(mask, -1), axis=1)
            features = summed / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
        else:
            features = keras.layers.Bidirectional(keras.layers.LSTM(lstm_units), name="bilstm")(
                mixed, mask=ops.cast(inputs["input_mask"], "bool"))
        logits = classification_logits(features, num_classes, dropout, initializer_range)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.head = head
        self.lstm_units = lstm_units
        self.dropout = dropout
        self.initializer_range = initializer_range

    head_patterns = (r"scalar_mix/.*", r"bilstm/.*", r"classifier/.*")

    def get_config(self):
        return self.config_with_encoder(num_classes=self.num_classes, head=self.head, lstm_units=self.lstm_units,
                                        dropout=self.dropout, initializer_range=self.initializer_range)
