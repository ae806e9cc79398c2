"""Probing classifiers: one linear probe per encoder layer on frozen features (Tenney et al. 2019, "What do you
learn from context? Probing for sentence structure in contextualized word representations"; Belinkov 2022 for
the method's caveats), all layers' probes trained together in one pass over the data."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import keras
from keras import ops

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES
from tfx_transfer.models.task_model import TaskModel, replica_mean
from tfx_transfer.models.token_classifier import token_loss


def layer_features(encoder) -> Tuple[keras.Model, List[int]]:
    """The encoder's per-layer outputs as one Keras model, and their layer numbers.

    Returns (model, numbers): the model maps the encoder's dict inputs (int32 [B, T]) to a list of [B, T, H]
    tensors: the embedding layer's output (number 0, after its LayerNorm) and the output of every transformer layer
    (numbers 1..L), as Hugging Face's `hidden_states`. An encoder without a reachable embedding layer (a black-box
    Hub module) gives layers 1..L only. The model shares the encoder's layers and variables (the pooler is not in
    it).
    """
    layers = list(encoder.output["encoder_outputs"])
    try:
        embeddings = [encoder.get_layer("embeddings").output]
    except (ValueError, AttributeError):
        embeddings = []
    model = keras.Model(encoder.input, embeddings + layers, name="layer_features")
    first = 0 if embeddings else 1
    return model, list(range(first, first + len(embeddings) + len(layers)))


def parse_probe_layers(value: str, available: Sequence[int]) -> List[int]:
    """`--probe_layers` ("all", or comma-separated layer numbers, 0 = embeddings) -> sorted layer numbers.

    Raises:
        ValueError: a number that is not one of `available`, or no layer at all.
    """
    if value.strip().lower() == "all":
        return list(available)
    try:
        chosen = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--probe_layers={value!r}: 'all' or layer numbers such as 0,3,6 (0 = embeddings).") \
            from None
    unknown = [n for n in chosen if n not in available]
    if unknown or not chosen:
        raise ValueError(f"--probe_layers={value!r}: this encoder has layers {list(available)} (0 = embeddings, "
                         f"when the encoder exposes them); {unknown or 'none'} chosen.")
    return chosen


class LayerProbes(TaskModel):
    """A linear probe on each chosen layer of a frozen encoder.

    Args:
        encoder: a `BertEncoder` (or any encoder whose functional graph gives `encoder_outputs`; see
            `layer_features`). It is run with training=False: the probed features are the encoder's inference
            outputs, no dropout.
        num_labels: C; for sequence probes 1 means regression.
        per_token: token probes (tagging: each token's vector -> dense(C)) or sequence probes (the masked mean of
            the real tokens' vectors -> dense(C), as `FeatureClassifier`'s linear head: a [CLS] vector below the
            top layer carries no sentence information to probe).
        layers: the layer numbers to probe (0 = embeddings); None = all.
        initializer_range: stddev of the probes' truncated-normal kernels (zero biases).

    Inputs: the encoder's dict, int32 [B, T]. Outputs: logits float32 [B, T, P, C] (per_token) or [B, P, C],
    P = len(layers), in the order of `self.layers_probed`.
    Loss (built in, compile without one): the sum over probes of each probe's own loss: token cross-entropy averaged
    over labelled tokens (labels int [B, T], -1 ignored), or cross-entropy / mean squared error for sequences
    (labels [B]), each over the global batch under tf.distribute (`replica_mean`). The probes share no variables,
    so each one's gradient is that of its own loss: trained with AdamW (a per-variable update) and no global-norm
    clipping, P probes trained together are P separate trainings with one encoder pass per batch. Variables: `probe_<n>/kernel` [H, C], `probe_<n>/bias` [C].
    """

    def __init__(self, encoder, num_labels, per_token: bool, layers: Optional[Sequence[int]] = None,
                 initializer_range=0.02, name="layer_probes", **kwargs):
        features, available = layer_features(encoder)
        chosen = list(available) if layers is None else [int(n) for n in layers]
        unknown = [n for n in chosen if n not in available]
        if unknown or not chosen:
            raise ValueError(f"layers={chosen}: the encoder has layers {available}.")
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        outputs = features(inputs, training=False)
        mask = ops.cast(inputs["input_mask"], "float32")
        logits = []
        for number in chosen:
            x = ops.cast(outputs[available.index(number)], "float32")
            if not per_token:
                x = ops.sum(x * mask[:, :, None], axis=1) / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
            logits.append(keras.layers.Dense(num_labels, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=initializer_range), name=f"probe_{number}", dtype="float32")(x))
        stacked = ops.stack(logits, axis=-2)  # [B, (T,) P, C]
        super().__init__(inputs=inputs, outputs=stacked, name=name, **kwargs)
        self.encoder = encoder
        self.num_labels = num_labels
        self.per_token = per_token
        self.layers_probed = chosen

    head_patterns = (r"probe_\d+/.*",)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return ops.sum(ops.stack([self.probe_loss(y, y_pred, p) for p in range(len(self.layers_probed))]))

    def probe_loss(self, y, y_pred, p):
        """The loss of probe `p` (an index into `layers_probed`) on labels `y` and the model's outputs."""
        if self.per_token:
            return token_loss(y, y_pred[:, :, p])
        logits = y_pred[:, p]
        if self.num_labels == 1:
            per_example = ops.square(logits[:, 0] - ops.cast(ops.reshape(y, (-1,)), logits.dtype))
        else:
            per_example = keras.losses.sparse_categorical_crossentropy(ops.reshape(y, (-1,)), logits,
                                                                       from_logits=True)
        return replica_mean(ops.sum(per_example), ops.cast(ops.shape(per_example)[0], per_example.dtype))
