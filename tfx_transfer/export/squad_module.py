"""A TF Serving SavedModel for SQuAD-style question answering that takes raw text, doc-stride windows in the graph.

serving_default(question [B] string, context [B] string) ->
    answer_text [B] string   the original context substring (byte offsets of the WordPiece pieces)
    score [B] float          best start_logit + end_logit
    start_logits, end_logits [B, T] of the window the answer came from
    null_odds [B] float      (SQuAD 2.0 models) null score - best score; answer_text is "" above the threshold

Long contexts are cut into windows of max_seq_length - len(question) - 3 pieces every doc_stride pieces, all
windows of the batch run through the model at once, and the best-scoring span wins (google-research/bert keeps a
span only in the window where its start token has the most context; here the best score over windows decides).
Words are split on Unicode whitespace; answers inside a word whose normalisation changes its byte length (e.g.
accented letters in uncased models) are returned as the whole word.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from tfx_transfer.export.classifier_module import UntrackedFunctions, model_forward
from tfx_transfer.export.inputs import checked_texts

NEG = -1e9


class SquadServingModule(tf.Module):
    def __init__(self, model, tokenizer, max_seq_length: int, vocab_file: str, doc_stride: int = 128,
                 max_query_length: int = 64, max_answer_length: int = 30, version_2: bool = False,
                 null_score_diff_threshold: float = 0.0):
        super().__init__(name="squad_serving")
        if max_seq_length <= max_query_length + 3:
            raise ValueError(f"max_seq_length={max_seq_length} must be > max_query_length + 3.")
        self.model = model
        self._forward = UntrackedFunctions([model_forward(lambda inputs: model(inputs, training=False))])
        self.wordpiece = tokenizer._wordpiece
        self._tokenizer = tokenizer
        self.whitespace = tf_text.WhitespaceTokenizer()
        self.max_seq_length, self.doc_stride = max_seq_length, doc_stride
        self.max_query_length, self.max_answer_length = max_query_length, max_answer_length
        self.version_2, self.threshold = version_2, float(null_score_diff_threshold)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(tokenizer.do_lower_case, trainable=False, name="do_lower_case")

    def _context_pieces(self, context):
        """Piece ids [B, (Lc)] and their byte [start, end) in the original context strings."""
        words, word_start, word_end = self.whitespace.tokenize_with_offsets(context)  # [B, (W)]
        flat_words = words.flat_values
        normalized = self._tokenizer.normalize(flat_words)
        pieces, piece_start, piece_end = self.wordpiece.tokenize_with_offsets(normalized)  # [ΣW, (P)]
        same_length = tf.equal(tf.strings.length(normalized), tf.strings.length(flat_words))  # [ΣW]
        w_start = tf.cast(word_start.flat_values, tf.int64)
        w_end = tf.cast(word_end.flat_values, tf.int64)
        rows = pieces.value_rowids()  # word of each piece
        use_inner = tf.gather(same_length, rows)
        start = tf.where(use_inner, tf.gather(w_start, rows) + tf.cast(piece_start.flat_values, tf.int64),
                         tf.gather(w_start, rows))
        end = tf.where(use_inner, tf.gather(w_start, rows) + tf.cast(piece_end.flat_values, tf.int64),
                       tf.gather(w_end, rows))
        per_example = words.row_lengths()  # words per example
        piece_rows = tf.RaggedTensor.from_row_lengths(pieces.row_lengths(), per_example)  # [B, (W)] pieces/word
        lengths = tf.reduce_sum(piece_rows, axis=1)  # pieces per example
        ids = tf.RaggedTensor.from_row_lengths(tf.cast(pieces.flat_values, tf.int32), lengths)
        return ids, start, end

    def _answer(self, question, context):
        question, context = checked_texts(question=question, context=context).values()
        tok = self._tokenizer
        query = tok.tokenize(question)[:, :self.max_query_length]  # [B, (Lq)]
        doc, byte_start, byte_end = self._context_pieces(context)  # [B, (Lc)], flat
        q_len = tf.cast(query.row_lengths(), tf.int32)
        c_len = tf.cast(doc.row_lengths(), tf.int32)
        max_doc = self.max_seq_length - q_len - 3  # [B]
        n_windows = 1 + tf.maximum(0, -(-(c_len - max_doc) // self.doc_stride))  # ceil division
        window_example = tf.repeat(tf.range(tf.shape(q_len)[0]), n_windows)  # [Nw]
        window_index = tf.ragged.range(n_windows).flat_values
        w_start = window_index * self.doc_stride
        w_len = tf.minimum(tf.gather(c_len, window_example) - w_start, tf.gather(max_doc, window_example))
        w_len = tf.maximum(w_len, 0)
        global_start = tf.cast(tf.gather(doc.row_starts(), window_example), tf.int32) + w_start
        positions = tf.ragged.range(global_start, global_start + w_len)  # [Nw, (len)] into the flat pieces
        window_doc = tf.gather(doc.flat_values, positions)
        window_query = tf.gather(query, window_example)
        ids, types = tf_text.combine_segments([window_query, window_doc], tok.cls_id, tok.sep_id)
        width = tf.maximum(tf.reduce_max(ids.row_lengths()), 1)  # an empty batch has no rows to measure
        word_ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=width)
        type_ids, _ = tf_text.pad_model_inputs(types, max_seq_length=width)
        outputs = self._forward.functions[0]({"input_word_ids": tf.cast(word_ids, tf.int32),
                                              "input_mask": tf.cast(mask, tf.int32),
                                              "input_type_ids": tf.cast(type_ids, tf.int32)})
        start_logits, end_logits = outputs["start_logits"], outputs["end_logits"]  # [Nw, T] float32

        # Best (start, end) per window inside its doc region, end - start < max_answer_length.
        t = tf.range(tf.cast(width, tf.int32))
        doc_first = tf.gather(q_len, window_example) + 2  # [Nw]
        in_doc = (t[None, :] >= doc_first[:, None]) & (t[None, :] < (doc_first + w_len)[:, None])  # [Nw, T]
        pair = start_logits[:, :, None] + end_logits[:, None, :]  # [Nw, T, T]
        span = t[None, :] - t[:, None]  # end - start
        allowed = (span >= 0) & (span < self.max_answer_length)
        valid = allowed[None] & in_doc[:, :, None] & in_doc[:, None, :]
        pair = tf.where(valid, pair, NEG)
        flat_best = tf.argmax(tf.reshape(pair, [tf.shape(pair)[0], -1]), axis=1, output_type=tf.int32)
        best_score = tf.reduce_max(tf.reshape(pair, [tf.shape(pair)[0], -1]), axis=1)  # [Nw]
        best_s, best_e = flat_best // tf.cast(width, tf.int32), flat_best % tf.cast(width, tf.int32)

        # The best window of each example.
        n_examples = tf.shape(q_len)[0]
        example_best = tf.math.unsorted_segment_max(best_score, window_example, n_examples)
        is_best = tf.equal(best_score, tf.gather(example_best, window_example))
        chosen = tf.math.unsorted_segment_min(tf.where(is_best, tf.range(tf.shape(best_score)[0]), 2 ** 30),
                                              window_example, n_examples)  # first best window
        s, e = tf.gather(best_s, chosen), tf.gather(best_e, chosen)
        first_piece = tf.gather(global_start, chosen) + s - tf.gather(doc_first, chosen)
        last_piece = tf.gather(global_start, chosen) + e - tf.gather(doc_first, chosen)
        has_answer = example_best > NEG / 2
        safe_first = tf.where(has_answer, first_piece, 0)
        safe_last = tf.where(has_answer, last_piece, 0)
        n_pieces = tf.shape(byte_start)[0]
        first_byte = tf.gather(tf.concat([byte_start, [0]], 0), tf.where(has_answer, safe_first, n_pieces))
        last_byte = tf.gather(tf.concat([byte_end, [0]], 0), tf.where(has_answer, safe_last, n_pieces))
        text = tf.strings.substr(context, first_byte, last_byte - first_byte, unit="BYTE")
        text = tf.where(has_answer, text, "")
        result = {"answer_text": text, "score": tf.where(has_answer, example_best, 0.0),
                  "start_logits": tf.gather(start_logits, chosen), "end_logits": tf.gather(end_logits, chosen)}
        if self.version_2:
            null = tf.math.unsorted_segment_min(start_logits[:, 0] + end_logits[:, 0], window_example, n_examples)
            null_odds = null - example_best
            result["null_odds"] = null_odds
            result["answer_text"] = tf.where(null_odds > self.threshold, "", result["answer_text"])
        return result

    def signatures(self):
        serve = tf.function(lambda question, context: self._answer(question, context),
                            input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                             tf.TensorSpec([None], tf.string, name="context")])
        return {"serving_default": serve.get_concrete_function()}
