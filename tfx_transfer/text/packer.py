"""Packing token segments into BERT inputs: [CLS] a [SEP] (b [SEP]), type ids, mask, padding."""

from __future__ import annotations

from typing import Dict, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from tfx_transfer.text.tokenizer import BertTokenizer


class BertPacker:
    """Turns 1-2 (or more) ragged id segments into the encoder's dict inputs.

    Truncation follows google-research/bert's `_truncate_seq_pair` (trim the longer segment first), which is what
    `tensorflow_text.RoundRobinTrimmer` computes: tokens are allotted one per segment in turn.

    Args:
        seq_length: maximum packed length, special tokens included.
        cls_id, sep_id, pad_id: ids of [CLS], [SEP], [PAD].
        pad_to_max_length: True pads every batch to `seq_length` (static shape, what serving wants); False pads
            to the longest sequence in the batch (faster training and inference on short texts).

    Call args:
        segments: list of int RaggedTensors [B, (tokens)], one per text field.

    Returns:
        dict of int32 [B, L]: input_word_ids, input_mask, input_type_ids (L = seq_length, or the batch's
        longest packed length).
    """

    def __init__(self, seq_length: int, cls_id: int, sep_id: int, pad_id: int = 0, pad_to_max_length: bool = True):
        if not isinstance(seq_length, int) or seq_length < 3:
            raise ValueError(f"seq_length={seq_length!r} must be an integer >= 3 ([CLS] x [SEP]).")
        self.seq_length = seq_length
        self.cls_id = cls_id
        self.sep_id = sep_id
        self.pad_id = pad_id
        self.pad_to_max_length = pad_to_max_length

    @classmethod
    def for_tokenizer(cls, tokenizer, seq_length: int, pad_to_max_length: bool = True) -> "BertPacker":
        return cls(seq_length, tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, pad_to_max_length)

    def __call__(self, segments: Sequence[tf.RaggedTensor]) -> Dict[str, tf.Tensor]:
        segments = list(segments)
        if not segments:
            raise ValueError("BertPacker needs at least one segment.")
        budget = self.seq_length - 1 - len(segments)  # [CLS] + one [SEP] per segment
        if budget < len(segments):
            raise ValueError(
                f"seq_length={self.seq_length} leaves no room for {len(segments)} segments and their special tokens."
            )
        segments = [tf.cast(s, tf.int32) for s in segments]
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        ids, type_ids = tf_text.combine_segments(trimmed, start_of_sequence_id=self.cls_id,
                                                 end_of_segment_id=self.sep_id)
        if self.pad_to_max_length:
            length = self.seq_length
        else:
            length = tf.maximum(tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32), 1)
        word_ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=length, pad_value=self.pad_id)
        type_ids, _ = tf_text.pad_model_inputs(type_ids, max_seq_length=length, pad_value=0)
        return {"input_word_ids": tf.cast(word_ids, tf.int32), "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(type_ids, tf.int32)}


class BertPreprocessor:
    """Raw text (single sentences or pairs) -> encoder inputs, in one call.

    Args:
        tokenizer: a `BertTokenizer`.
        seq_length: maximum packed length.
        pad_to_max_length: see `BertPacker`.

    Example:
        >>> pre = BertPreprocessor.from_pretrained("all-MiniLM-L6-v2", seq_length=128)
        >>> inputs = pre(["The cat sat."], ["A cat was sitting."])   # pairs -> [CLS] a [SEP] b [SEP]
    """

    def __init__(self, tokenizer, seq_length: int = 128, pad_to_max_length: bool = True):
        self.tokenizer = tokenizer
        self.packer = BertPacker.for_tokenizer(tokenizer, seq_length, pad_to_max_length)

    @classmethod
    def from_pretrained(cls, path_or_name, seq_length: int = 128, pad_to_max_length: bool = True):
        return cls(BertTokenizer.from_pretrained(path_or_name), seq_length, pad_to_max_length)

    def __call__(self, text_a, text_b=None) -> Dict[str, tf.Tensor]:
        segments = [self.tokenizer.tokenize(text_a)]
        if text_b is not None:
            segments.append(self.tokenizer.tokenize(text_b))
        return self.packer(segments)
