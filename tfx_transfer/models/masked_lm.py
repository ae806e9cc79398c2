"""Masked-LM pretraining model: an encoder plus BERT's tied masked-LM head, for continued pretraining (DAPT / TAPT,
Gururangan et al. 2020) with `run_pretraining.py`."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES
from tfx_transfer.layers.masked_lm import MaskedLMHead
from tfx_transfer.models.task_model import TaskModel, replica_mean


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertMaskedLM(TaskModel):
    """encoder -> sequence_output; BERT's masked-LM head (`layers.MaskedLMHead`, the decoder tied to the word
    embeddings) on the predicted positions only, as google-research/bert's `get_masked_lm_output` gathers
    `masked_lm_positions` (the full [B, T, V] logits of a 30k vocabulary would be ~0.5 GB per batch of 32 x 128).

    Args:
        encoder: a `BertEncoder`. max_predictions: P, the most predicted positions per sequence
            (max_predictions_per_seq).

    With `next_sentence=True`, also BERT's next-sentence head (Devlin et al. 2019, sec. 3.1, task #2): logits [B, 2]
    = pooled_output @ W + b, W [H, 2] (google-research/bert's `cls/seq_relationship`, transformers'
    `cls.seq_relationship`; class 0 = B follows A, 1 = B is random, `data.pretraining.IS_NEXT` / `RANDOM_NEXT`).

    Args:
        encoder: a `BertEncoder`. max_predictions: P, the most predicted positions per sequence
            (max_predictions_per_seq). next_sentence: add the next-sentence head.

    Inputs: the encoder's dict, int32 [B, T] (already masked: `data.masking.mask_batch`). Outputs: sequence_output
    [B, T, H]; with next_sentence, {"sequence_output": [B, T, H], "next_sentence": float32 logits [B, 2]}.
    Labels (training, `compute_loss`): int32 [B, T], the original id at predicted positions, -1 elsewhere; with
    next_sentence, {"masked_lm": that, "next_sentence": int32 [B]}.
    Loss: cross-entropy averaged over the predicted positions of the global batch (`replica_mean`), plus the
    next-sentence cross-entropy averaged over the global batch (google-research/bert's sum of the two).
    Variables of the heads: `masked_lm/transform/{kernel,bias}`, `masked_lm/layer_norm/{gamma,beta}`,
    `masked_lm/output_bias` [V]; `next_sentence/{kernel [H, 2], bias [2]}`.
    """

    def __init__(self, encoder, max_predictions=20, next_sentence=False, name="bert_masked_lm", **kwargs):
        if int(max_predictions) < 1:
            raise ValueError(f"max_predictions={max_predictions} must be >= 1.")
        inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
        outputs = encoder(inputs)
        if next_sentence:
            config = encoder.bert_config
            dense = keras.layers.Dense(2, name="next_sentence", kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=config.initializer_range))
            logits = keras.layers.Activation("linear", dtype="float32", name="next_sentence_logits")(
                dense(outputs["pooled_output"]))
            outputs = {"sequence_output": outputs["sequence_output"], "next_sentence": logits}
        else:
            outputs = outputs["sequence_output"]
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.encoder = encoder
        self.max_predictions = int(max_predictions)
        self.next_sentence = bool(next_sentence)
        self.masked_lm = MaskedLMHead.for_encoder(encoder)
        self.masked_lm.build((None, None, encoder.bert_config.hidden_size))  # before the optimizer is built

    head_patterns = (r"masked_lm/.*", r"next_sentence/.*")
    loads_producer_heads = True  # google-research/bert's cls/predictions, transformers' cls.predictions

    def predictions(self, sequence, labels):
        """(logits float32 [B, K, V], labels int32 [B, K], weights float32 [B, K]) at the first K predicted
        positions of each row (labels >= 0; weights 0 where a row has fewer), K = min(max_predictions, the most
        predictions a row of this batch has): short sequences do not pay for max_predictions head outputs."""
        labels = tf.cast(labels, tf.int32)
        length = tf.shape(labels)[1]
        chosen = labels >= 0
        score = tf.where(chosen, length - tf.range(length)[None], 0)  # predicted positions first, in order
        most = tf.reduce_max(tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1))
        _, positions = tf.math.top_k(score, k=tf.maximum(1, tf.minimum(self.max_predictions, most)))
        picked = tf.gather(labels, positions, batch_dims=1)
        logits = self.masked_lm(tf.gather(sequence, positions, batch_dims=1))
        return logits, tf.maximum(picked, 0), tf.cast(picked >= 0, tf.float32)

    def prediction_losses(self, sequence, labels):
        """`predictions` and the cross-entropy [B, K] of each: (losses, logits, labels, weights)."""
        logits, labels, weights = self.predictions(sequence, labels)
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True), logits, labels, weights

    def next_sentence_losses(self, outputs, labels):
        """Cross-entropy [B] of the next-sentence logits in `outputs` (the model's output dict) against labels [B]."""
        return keras.losses.sparse_categorical_crossentropy(labels, outputs["next_sentence"], from_logits=True)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not self.next_sentence:
            losses, _, _, weights = self.prediction_losses(y_pred, y)
            return replica_mean(ops.sum(losses * weights), ops.sum(weights)) + self.extra_losses(x, training)
        losses, _, _, weights = self.prediction_losses(y_pred["sequence_output"], y["masked_lm"])
        pairs = self.next_sentence_losses(y_pred, y["next_sentence"])
        return (replica_mean(ops.sum(losses * weights), ops.sum(weights))
                + replica_mean(ops.sum(pairs), ops.cast(ops.shape(pairs)[0], "float32"))
                + self.extra_losses(x, training))

    def get_config(self):
        return self.config_with_encoder(max_predictions=self.max_predictions, next_sentence=self.next_sentence)
