"""A TF Serving SavedModel for token classification (NER, part-of-speech tags, chunking) that takes raw text.

Signatures (`saved_model_cli show --all` lists them):
  serving_default(text [B] string) -> per word, padded to the batch's most words W:
      words [B, W] string           the word as it appears in the input ("" = padding)
      labels [B, W] string          its predicted label ("" = padding)
      label_ids [B, W] int32        (-1 = padding)
      probabilities [B, W] float32  softmax probability of that label (0 = padding)
      start_offsets, end_offsets [B, W] int32: the word's Unicode character span in the input, text[start:end] in
                                    Python (-1 = padding)
      num_words [B] int32
  from_ids(input_word_ids, input_mask, input_type_ids [B, T] int32) -> per token: logits [B, T, C],
      probabilities [B, T, C], label_id [B, T] int32, label [B, T] string

How text becomes words and labels (the training path's own rules, data/tagging.py):
1. words are found on the text as given with BERT's boundaries (`BertTokenizer.split_words`: whitespace, and each
   punctuation / CJK character a word of its own, as google-research/bert's BasicTokenizer and Hugging Face's
   token-classification pipeline split them), so the offsets point into the client's string;
2. each word is normalised and WordPiece-tokenised on its own with the model's vocabulary and casing; a word that
   normalises to nothing (only control or zero-width characters, which BERT's cleaning drops) is not a word and is
   left out;
3. the words of a text are packed into windows of whole words of at most max_seq_length - 2 pieces, greedily in
   order (a word longer than a window alone in one, cut), all windows of the batch run through the model at once,
   and each word's label is read at its first sub-token: every word gets exactly one prediction, however long the
   text.
Loading needs the TF Text ops registered (`import tensorflow_text`; TF Serving builds that include them).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfx_transfer.export.classifier_module import UntrackedFunctions, label_outputs, model_forward
from tfx_transfer.export.inputs import checked_texts
from tfx_transfer.text.packer import BertPacker


def greedy_windows(rows, lengths, budget: int):
    """Windows of consecutive words, packed greedily per text: a word opens a new window when it would overflow
    `budget` pieces (a window's first word always fits; longer words must have been cut to `budget`).

    Args:
        rows: int64 [N], the text of each word (non-decreasing). lengths: int64 [N], pieces per word (>= 1).
        budget: pieces per window.

    Returns:
        (window [N], start [N]) int64: the word's window within its text (0, 1, ...) and its first piece's position
        among the window's pieces.
    """
    def step(state, element):
        previous_row, window, used, _ = state
        row, length = element
        same_row = tf.equal(row, previous_row)
        none = tf.zeros_like(used)
        window, used = tf.where(same_row, window, none), tf.where(same_row, used, none)
        overflow = tf.logical_and(used > 0, used + length > budget)
        window, used = tf.where(overflow, window + 1, window), tf.where(overflow, none, used)
        return row, window, used + length, used

    zero = tf.constant(0, tf.int64)
    _, window, _, start = tf.scan(step, (rows, lengths), initializer=(zero - 1, zero, zero, zero))
    return window, start


class TaggerServingModule(tf.Module):
    """Holds the Keras token classifier, the tokenizer and the label names; see the module docstring."""

    def __init__(self, model, tokenizer, max_seq_length: int, labels: Sequence[str], vocab_file: str):
        super().__init__(name="tagger_serving")
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length={max_seq_length}: a window needs [CLS], one piece and [SEP].")
        if not labels:
            raise ValueError("A tagger export needs its label names.")
        self.model = model
        self.wordpiece = tokenizer._wordpiece
        self._tokenizer = tokenizer
        self._budget = max_seq_length - 2
        self.packer = BertPacker.for_tokenizer(tokenizer, max_seq_length, pad_to_max_length=False)
        self.label_names = tf.constant(list(labels), tf.string)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False, name="do_lower_case")
        self.max_seq_length = tf.Variable(max_seq_length, trainable=False, name="max_seq_length")
        self._forward = UntrackedFunctions([model_forward(lambda inputs: model(inputs, training=False))])

    def _logits(self, inputs):
        return self._forward.functions[0](inputs)  # [B, T, C] float32

    def _token_outputs(self, inputs):
        return label_outputs(self._logits(inputs), self.label_names)  # [B, T, C]

    def _from_text(self, text):
        text = checked_texts(text=text)["text"]
        batch = tf.shape(text, out_type=tf.int64)[0]
        words, begin, _ = self._tokenizer.split_words(text)  # [B, (W)]; a word's end is its start + its length
        pieces = self._tokenizer.tokenize(words.flat_values)  # [N, (P)]: each word on its own, as in training
        kept = pieces.row_lengths() > 0
        pieces = tf.ragged.boolean_mask(pieces, kept)[:, :self._budget]
        rows = tf.boolean_mask(words.value_rowids(), kept)  # [N'] the text of each word
        word_text, begin = (tf.boolean_mask(t.flat_values, kept) for t in (words, begin))

        window, start = greedy_windows(rows, pieces.row_lengths(), self._budget)
        windows_per_text = tf.maximum(tf.math.unsorted_segment_max(window, rows, batch) + 1, 0)  # [B]
        first_window = tf.cumsum(windows_per_text, exclusive=True)  # [B]
        word_window = tf.gather(first_window, rows) + window  # [N'] index among the batch's windows
        window_pieces = tf.RaggedTensor.from_value_rowids(
            pieces.flat_values, tf.gather(word_window, pieces.value_rowids()),
            nrows=tf.reduce_sum(windows_per_text))  # [windows, (pieces)]
        logits = self._logits(self.packer([window_pieces]))  # [windows, T, C]
        word_logits = tf.gather_nd(logits, tf.stack([word_window, start + 1], axis=1))  # [N', C]; +1: [CLS]
        probabilities = tf.nn.softmax(word_logits, axis=-1)
        label_id = tf.argmax(word_logits, axis=-1, output_type=tf.int32)

        before = tf.strings.substr(tf.gather(text, rows), tf.zeros_like(begin), begin)  # the text up to each word
        start_char = tf.strings.length(before, unit="UTF8_CHAR")
        end_char = start_char + tf.strings.length(word_text, unit="UTF8_CHAR")

        def per_text(values, padding):
            return tf.RaggedTensor.from_value_rowids(values, rows, nrows=batch).to_tensor(padding)

        return {"words": per_text(word_text, ""), "labels": per_text(tf.gather(self.label_names, label_id), ""),
                "label_ids": per_text(label_id, -1),
                "probabilities": per_text(tf.reduce_max(probabilities, axis=-1), 0.0),
                "start_offsets": per_text(start_char, -1), "end_offsets": per_text(end_char, -1),
                "num_words": tf.cast(tf.RaggedTensor.from_value_rowids(rows, rows, nrows=batch).row_lengths(),
                                     tf.int32)}

    def signatures(self):
        ids_spec = [tf.TensorSpec([None, None], tf.int32, name=name)
                    for name in ("input_word_ids", "input_mask", "input_type_ids")]
        from_ids = tf.function(lambda input_word_ids, input_mask, input_type_ids: self._token_outputs(
            {"input_word_ids": input_word_ids, "input_mask": input_mask, "input_type_ids": input_type_ids}),
            input_signature=ids_spec, autograph=False)
        serve = tf.function(self._from_text, autograph=False,
                            input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        return {"serving_default": serve.get_concrete_function(), "from_ids": from_ids.get_concrete_function()}
