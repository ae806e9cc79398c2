"""BERT input embeddings: word + position + token type, then LayerNorm and dropout."""

import keras
from keras import ops

from tfx_transfer.layers.dropout import Dropout
from tfx_transfer.layers.layer_norm import LayerNorm


@keras.saving.register_keras_serializable(package="tfx_transfer")
class BertEmbeddings(keras.layers.Layer):
    """Sum of word, learned absolute position and token-type embeddings (Devlin et al. 2019, fig. 2).

    Args:
        vocab_size: rows of the word-embedding table.
        hidden_size: embedding width H.
        max_position_embeddings: rows of the position table; longest sequence accepted.
        type_vocab_size: number of segment types (2 for sentence pairs).
        dropout_rate: dropout applied after the LayerNorm (only when `training=True`).
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: stddev of the truncated-normal initializer.

    Call args:
        input_word_ids: int [B, T].
        input_type_ids: int [B, T].
        training: enables dropout.

    Returns:
        float [B, T, H].

    Variables (relative paths): `word_embeddings/embeddings` [V, H], `position_embeddings/embeddings` [P, H],
    `token_type_embeddings/embeddings` [types, H], `layer_norm/{gamma,beta}` [H].
    """

    def __init__(self, vocab_size, hidden_size, max_position_embeddings=512, type_vocab_size=2,
                 dropout_rate=0.1, layer_norm_epsilon=1e-12, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.word_embeddings = keras.layers.Embedding(vocab_size, hidden_size, embeddings_initializer=init,
                                                      name="word_embeddings", dtype=self.dtype_policy)
        self.position_embeddings = keras.layers.Embedding(max_position_embeddings, hidden_size,
                                                          embeddings_initializer=init, name="position_embeddings",
                                                          dtype=self.dtype_policy)
        self.token_type_embeddings = keras.layers.Embedding(type_vocab_size, hidden_size, embeddings_initializer=init,
                                                            name="token_type_embeddings", dtype=self.dtype_policy)
        self.layer_norm = LayerNorm(epsilon=layer_norm_epsilon, name="layer_norm", dtype=self.dtype_policy)
        self.dropout = Dropout(dropout_rate, name="dropout", dtype=self.dtype_policy)

    def build(self, input_word_ids_shape, input_type_ids_shape=None):
        self.word_embeddings.build(input_word_ids_shape)
        self.position_embeddings.build(None)
        self.token_type_embeddings.build(input_word_ids_shape)
        self.layer_norm.build(tuple(input_word_ids_shape) + (self.hidden_size,))
        self.built = True

    def call(self, input_word_ids, input_type_ids, training=None):
        seq_length = input_word_ids.shape[1]
        if seq_length is not None and seq_length > self.max_position_embeddings:
            raise ValueError(
                f"Sequence length {seq_length} exceeds max_position_embeddings={self.max_position_embeddings}; "
                f"truncate inputs to at most {self.max_position_embeddings} tokens (max_seq_length)."
            )
        if seq_length is None:
            seq_length = ops.shape(input_word_ids)[1]
        positions = ops.slice(self.position_embeddings.embeddings, (0, 0), (seq_length, self.hidden_size))  # [T, H]
        x = self.word_embeddings(input_word_ids) + self.token_type_embeddings(input_type_ids)  # [B, T, H]
        x = x + ops.cast(positions, x.dtype)[None]
        x = self.layer_norm(x)
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_word_ids_shape, input_type_ids_shape=None):
        return tuple(input_word_ids_shape) + (self.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
                      dropout_rate=self.dropout_rate, layer_norm_epsilon=self.layer_norm_epsilon,
                      initializer_range=self.initializer_range)
        return config
