"""A TF Hub preprocessing SavedModel matching `encoder.py` (the tfhub.dev BERT preprocessor interface).

    preprocess = hub.load(path)              # after `import tensorflow_text`
    inputs = preprocess(["a sentence"])      # the encoder's three int32 tensors, length seq_length
    tokens = preprocess.tokenize(["a sentence"])                  # RaggedTensor [B, (words), (pieces)]
    inputs = preprocess.bert_pack_inputs([tokens_a, tokens_b], seq_length=128)   # pairs, round-robin truncation
    preprocess.tokenize.get_special_tokens_dict()                 # start_of_sequence_id, end_of_segment_id, ...
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_text as tf_text

from tfx_transfer.io_utils import atomic_directory

TOKENS_SPEC = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)


class _Tokenize(tf.Module):
    def __init__(self, tokenizer):
        super().__init__(name="tokenize")
        self._tokenizer = tokenizer
        self.wordpiece = tokenizer._wordpiece
        self.special = {"start_of_sequence_id": tokenizer.cls_id, "end_of_segment_id": tokenizer.sep_id,
                        "padding_id": tokenizer.pad_id, "mask_id": tokenizer.mask_id if tokenizer.mask_id is not None
                        else tokenizer.unk_id, "vocab_size": tokenizer.vocab_size}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        pieces = self._tokenizer.tokenize(strings)  # [B, (P)]
        ones = tf.ones_like(pieces.flat_values, dtype=tf.int64)
        return pieces.with_values(tf.RaggedTensor.from_row_lengths(pieces.flat_values, ones))  # [B, (P), (1)]

    @tf.function(input_signature=[])
    def get_special_tokens_dict(self):
        return {key: tf.constant(value, tf.int32) for key, value in self.special.items()}


class _PackInputs(tf.Module):
    def __init__(self, tokenizer):
        super().__init__(name="bert_pack_inputs")
        self.cls_id, self.sep_id, self.pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id

    def _pack(self, segments, seq_length):
        segments = [tf.cast(s.merge_dims(-2, -1), tf.int32) for s in segments]
        budget = seq_length - 1 - len(segments)
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        ids, types = tf_text.combine_segments(trimmed, self.cls_id, self.sep_id)
        word_ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=seq_length, pad_value=self.pad_id)
        type_ids, _ = tf_text.pad_model_inputs(types, max_seq_length=seq_length)
        return {"input_word_ids": tf.cast(word_ids, tf.int32), "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(type_ids, tf.int32)}

    @tf.function
    def __call__(self, inputs, seq_length=128):
        return self._pack(list(inputs), seq_length)

    def trace(self):
        for count in (1, 2):
            self.__call__.get_concrete_function([TOKENS_SPEC] * count, tf.TensorSpec([], tf.int32))


class HubPreprocessorModule(tf.Module):
    def __init__(self, tokenizer, seq_length: int, vocab_file: str):
        super().__init__(name="bert_preprocessor_hub")
        self.tokenize = _Tokenize(tokenizer)
        self.bert_pack_inputs = _PackInputs(tokenizer)
        self.seq_length = seq_length
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False, name="do_lower_case")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings):
        return self.bert_pack_inputs._pack([self.tokenize(strings)], self.seq_length)

    def trace(self):
        self.bert_pack_inputs.trace()
        return {"serving_default": self.__call__.get_concrete_function()}


def export_preprocessor(tokenizer, seq_length: int, export_path: str, overwrite: bool = False) -> str:
    """Writes the preprocessing SavedModel atomically. Returns `export_path`."""
    module = HubPreprocessorModule(tokenizer, seq_length, tokenizer.vocab_file)
    signatures = module.trace()
    with atomic_directory(export_path, overwrite) as tmp:
        tf.saved_model.save(module, tmp, signatures=signatures)
    return os.fspath(export_path)
