"""Masked-LM targets for continued pretraining, made in the input pipeline: google-research/bert's
`create_pretraining_data.py` rule (a fixed number of predictions per sequence, whole-word option, 80/10/10), computed
in TensorFlow on each batch with stateless random numbers: a batch's masks are a function of (seed, epoch, batch
position), new every epoch (dynamic masking, Liu et al. 2019), or each sequence's a function of (seed, its tokens),
the same every epoch (static, as google-research/bert's preprocessed data); a resumed run masks exactly as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

IGNORED = -1  # label of positions without a prediction (as data.tagging.IGNORED)


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """What `mask_batch` does.

    Args:
        mask_id, vocab_size: the tokenizer's [MASK] id and vocabulary size (random replacements are any id).
        special_ids: ids never predicted ([CLS], [SEP], [PAD]).
        rate: masked_lm_prob; each sequence predicts min(max_predictions, max(1, round(rate x its length)))
            tokens (its length counts [CLS] and [SEP], as google-research/bert does).
        max_predictions: max_predictions_per_seq.
        continuation: bool per vocabulary id: a "##" piece (whole-word masking keeps a word's pieces together).
        whole_word: mask whole words (all pieces of a chosen word) instead of single pieces.
        dynamic: new masks each epoch; else static: each sequence's masks are fixed by its tokens and the seed.
        seed: the run's seed.
    """

    mask_id: int
    vocab_size: int
    special_ids: Sequence[int]
    continuation: np.ndarray
    rate: float = 0.15
    max_predictions: int = 20
    whole_word: bool = False
    dynamic: bool = True
    seed: int = 0

    @classmethod
    def for_tokenizer(cls, tokenizer, **kwargs) -> "MaskingConfig":
        """From a `text.tokenizer.BertTokenizer` (its vocabulary must have [MASK])."""
        if tokenizer.mask_id is None:
            raise ValueError(f"{tokenizer.vocab_file}: the vocabulary has no [MASK] token; masked-LM training needs "
                             "one.")
        continuation = np.asarray([token.startswith("##") for token in tokenizer.vocab], bool)
        special = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id]
        return cls(mask_id=tokenizer.mask_id, vocab_size=tokenizer.vocab_size, special_ids=tuple(special),
                   continuation=continuation, **kwargs)


def mask_batch(word_ids, input_mask, config: MaskingConfig, epoch, position):
    """google-research/bert's masking of one batch.

    Per sequence, the candidates are its real tokens except special ones; n = min(max_predictions, max(1,
    round(rate x real length))) of them are chosen at random (whole words with `whole_word`: a word is its first
    piece and the "##" pieces after it; words are taken in random order, a word that does not fit in the room
    left is skipped, as in google-research/bert's loop, so a sequence may get fewer than n). Each chosen token
    becomes [MASK] with probability 0.8, a uniformly random id with 0.1, and stays itself with 0.1.

    Args:
        word_ids, input_mask: int [B, T]. epoch, position: int scalars (the batch's epoch and index in it).
    Returns:
        (masked word ids int32 [B, T], labels int32 [B, T]: the original id where a prediction is made, IGNORED
        elsewhere).
    """
    import tensorflow as tf

    word_ids = tf.cast(word_ids, tf.int32)
    real = tf.cast(input_mask, tf.bool)
    candidate = real
    for special in config.special_ids:
        candidate &= tf.not_equal(word_ids, special)
    shape = tf.shape(word_ids)
    length = shape[1]
    keys, action, random_ids = _random_draws(word_ids, real, config, epoch, position)
    positions = tf.broadcast_to(tf.range(length)[None], shape)
    if config.whole_word:
        piece = tf.gather(tf.constant(config.continuation), word_ids)
        previous_candidate = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
        starts = candidate & ~(piece & previous_candidate)
        # Each token's word = the last start at or before it: max over s <= t of (s if start_s else -1).
        start_positions = tf.where(starts, positions, -1)
        earlier = tf.range(length)[None, :] <= tf.range(length)[:, None]  # [T (t), T (s)]: s <= t
        word = tf.reduce_max(tf.where(earlier[None], start_positions[:, None, :], -1), axis=2)  # [B, T]
        word = tf.where(candidate, word, positions)
    else:
        word, starts = positions, candidate  # every candidate is a word of its own
    key = tf.where(candidate, tf.gather(keys, tf.maximum(word, 0), batch_dims=1), -1.0)  # a word's key: its first's
    both = candidate[:, None, :] & candidate[:, :, None]  # [B, T (me), T (other)]
    size = tf.reduce_sum(tf.cast(both & tf.equal(word[:, None, :], word[:, :, None]), tf.int32), axis=2)
    # A word's rank in the random order (every piece of it has it): the number of words with a larger key.
    rank = tf.reduce_sum(tf.cast(starts[:, None, :] & (key[:, None, :] > key[:, :, None]), tf.int32), axis=2)
    real_length = tf.reduce_sum(tf.cast(real, tf.float32), axis=1)
    budget = tf.minimum(config.max_predictions, tf.maximum(1, tf.cast(tf.round(real_length * config.rate), tf.int32)))
    start_size = tf.where(starts, size, 0)

    def take(used, k):  # google-research/bert's loop: the k-th word is taken if it fits, else skipped
        words = tf.reduce_sum(tf.where(tf.equal(rank, k), start_size, 0), axis=1)  # [B]: its size (0: none)
        taken = (words > 0) & (used + words <= budget)
        return used + tf.where(taken, words, 0), taken

    _, taken = tf.scan(lambda state, k: take(state[0], k), tf.range(length),
                       initializer=(tf.zeros_like(budget), tf.zeros_like(budget, tf.bool)))
    chosen = candidate & tf.gather(tf.transpose(taken), rank, batch_dims=1)
    masked = tf.where(chosen & (action < 0.8), tf.fill(shape, config.mask_id), word_ids)
    masked = tf.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, masked)
    labels = tf.where(chosen, word_ids, IGNORED)
    return masked, labels


def _random_draws(word_ids, real, config: MaskingConfig, epoch, position):
    """(order keys float [B, T], 80/10/10 draws float [B, T], random ids int32 [B, T]).

    Dynamic masking: drawn from (seed, epoch, batch position). Static: each row's from (seed, a fingerprint of
    its real tokens), so a sequence gets the same masks every epoch wherever it lands in the batches (and
    whatever the batch's padded length: a row's draws are one 1-D stream, of which the row takes the start).
    """
    import tensorflow as tf

    shape = tf.shape(word_ids)
    if config.dynamic:
        seed = tf.stack([tf.constant(config.seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
                         tf.cast(position, tf.int64)])
        return tuple(tf.random.stateless_uniform(shape, seed + tf.constant([0, k], tf.int64) * 1_000_000_007,
                                                 *bounds) for k, bounds in
                     ((0, ()), (1, ()), (2, (0, config.vocab_size, tf.int32))))
    rows = tf.RaggedTensor.from_tensor(word_ids, lengths=tf.reduce_sum(tf.cast(real, tf.int32), axis=1))
    fingerprints = tf.strings.to_hash_bucket_fast(
        tf.strings.reduce_join(tf.strings.as_string(rows), axis=1, separator=" "), (1 << 62) - 1)

    def one_row(fingerprint):
        seed = tf.stack([tf.constant(config.seed, tf.int64), fingerprint])
        return (tf.random.stateless_uniform(shape[1:], seed),
                tf.random.stateless_uniform(shape[1:], seed + tf.constant([0, 1], tf.int64)),
                tf.random.stateless_uniform(shape[1:], seed + tf.constant([0, 2], tf.int64), 0, config.vocab_size,
                                            dtype=tf.int32))

    return tf.map_fn(one_row, fingerprints, fn_output_signature=(tf.float32, tf.float32, tf.int32))


def target_maker(config: MaskingConfig, next_sentence: bool = False):
    """`mask_batch` as a batch transform of the encoder's dict: (inputs, labels, epoch, position) -> (inputs with the
    masked word ids, masked-LM labels [B, T]); `labels` (the split's own) are not used, except with `next_sentence`:
    they are then the next-sentence labels [B], and the targets are {"masked_lm": [B, T], "next_sentence": [B]}."""
    def make(inputs, labels, epoch, position):
        masked, targets = mask_batch(inputs["input_word_ids"], inputs["input_mask"], config, epoch, position)
        if next_sentence:
            targets = {"masked_lm": targets, "next_sentence": labels}
        return dict(inputs, input_word_ids=masked), targets
    return make
