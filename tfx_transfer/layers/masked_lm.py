"""BERT's masked-LM head with the output projection tied to the word embeddings, and BERT's token masking."""

from __future__ import annotations

import keras
from keras import ops

from tfx_transfer.layers.activations import get_activation
from tfx_transfer.layers.layer_norm import LayerNorm
from tfx_transfer.layers.token_dense import TokenDense


@keras.saving.register_keras_serializable(package="tfx_transfer")
class MaskedLMHead(keras.layers.Layer):
    """logits = LayerNorm(act(W h + b)) @ E^T + output_bias (google-research/bert `cls/predictions`).

    The decoder is the encoder's word-embedding table E [V, H] (weight tying, Press & Wolf 2017): the head owns
    only `transform/{kernel,bias}`, `layer_norm/{gamma,beta}` and `output_bias` [V].

    Args:
        embedding_table: a zero-argument callable returning E (not stored as a layer attribute, so the encoder's
            variable is not tracked twice).
        vocab_size, hidden_act, layer_norm_epsilon, initializer_range: as the encoder's config.

    Call args: sequence_output float [B, T, H]. Returns logits float32 [B, T, V].
    """

    def __init__(self, embedding_table, vocab_size, hidden_act="gelu", layer_norm_epsilon=1e-12,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self._table = embedding_table
        self.vocab_size = int(vocab_size)
        self.hidden_act = hidden_act
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def build(self, input_shape):
        hidden = input_shape[-1]
        self.transform = TokenDense(hidden, activation=get_activation(self.hidden_act), name="transform",
                                            kernel_initializer=keras.initializers.TruncatedNormal(
                                                stddev=self.initializer_range))
        self.transform.build(input_shape)
        self.layer_norm = LayerNorm(epsilon=self.layer_norm_epsilon, name="layer_norm")
        self.layer_norm.build(input_shape)
        self.output_bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="output_bias")
        self.built = True

    def call(self, sequence_output):
        x = self.layer_norm(self.transform(sequence_output))
        logits = ops.matmul(x, ops.transpose(self._table())) + self.output_bias
        return ops.cast(logits, "float32")

    @classmethod
    def for_encoder(cls, encoder, name="masked_lm"):
        """A head tied to `encoder`'s (a `BertEncoder`) word embeddings."""
        config = encoder.bert_config
        words = encoder.get_layer("embeddings").word_embeddings
        return cls(lambda: words.embeddings, config.vocab_size, config.hidden_act, config.layer_norm_eps,
                   config.initializer_range, name=name)


def mask_tokens(word_ids, input_mask, *, mask_id: int, vocab_size: int, special_ids=(), rate: float = 0.15,
                seed=None):
    """BERT's masking (Devlin et al. 2019, sec. 3.1): each real, non-special token is selected with probability
    `rate`; a selected token becomes [MASK] 80% of the time, a random token 10%, itself 10%.

    Args:
        word_ids, input_mask: int [B, T].
    Returns:
        (masked_word_ids int32 [B, T], selected float32 [B, T]: 1 where the MLM loss applies).
    """
    import tensorflow as tf

    word_ids = tf.cast(word_ids, tf.int32)
    candidate = tf.cast(input_mask, tf.bool)
    for special in special_ids:
        candidate &= tf.not_equal(word_ids, special)
    draw = tf.random.uniform(tf.shape(word_ids), seed=seed)
    selected = candidate & (draw < rate)
    action = tf.random.uniform(tf.shape(word_ids), seed=None if seed is None else seed + 1)
    random_ids = tf.random.uniform(tf.shape(word_ids), 0, vocab_size, dtype=tf.int32,
                                   seed=None if seed is None else seed + 2)
    masked = tf.where(selected & (action < 0.8), tf.fill(tf.shape(word_ids), mask_id), word_ids)
    masked = tf.where(selected & (action >= 0.8) & (action < 0.9), random_ids, masked)
    return masked, tf.cast(selected, tf.float32)


def masked_lm_loss(logits, labels, weights):
    """Mean cross-entropy over the selected positions (0 when none is selected). logits [B, T, V], labels/weights
    [B, T]."""
    losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return ops.sum(losses * weights) / ops.maximum(ops.sum(weights), 1.0)
