"""BERT WordPiece tokenization in the TensorFlow graph (tensorflow-text `FastBertTokenizer`).

The normalisation is done here with TF string ops so that ids equal google-research/bert's
`FullTokenizer` (and Hugging Face's `BertTokenizer`), character for character:

1. clean: drop U+0000, U+FFFD and control/format characters (Cc, Cf); whitespace (\\t \\n \\r, Zs) -> " ";
2. uncased models: Unicode lower-casing, then NFD and drop combining marks (Mn) — "strip accents" (Hugging Face's
   `strip_accents` can switch the second part off or on independently, keras-hub presets lower-case only);
3. words longer than `max_chars_per_word` characters -> one [UNK] (`max_input_chars_per_word`: 200 in
   google-research/bert's tokenization.py, 100 in Hugging Face's, which records it in tokenizer.json;
   FastBertTokenizer counts bytes, not characters, so the limit is applied here);
4. `FastBertTokenizer` splits whitespace, punctuation and CJK characters and runs WordPiece.

tensorflow-text's own `lower_case_nfd_strip_accents=True` (and `BertTokenizer(lower_case=True)`) case-fold with
NFKC, which changes ids for e.g. "ß", "ﬁ", "x²", full-width letters; we do not use it.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import tensorflow as tf
import tensorflow_text as tf_text

from tfx_transfer.text.casing import warn_if_case_mismatch
from tfx_transfer.text.tokenizer_files import GOOGLE_MAX_CHARS_PER_WORD, TokenizerSettings
from tfx_transfer.text.vocab import load_vocab

MAX_CHARS_PER_WORD = GOOGLE_MAX_CHARS_PER_WORD  # google-research/bert's WordpieceTokenizer(max_input_chars_per_word)
# BERT's word boundaries: whitespace, "punctuation" (ASCII non-alphanumerics and Unicode P*) and CJK ideographs,
# which are split off one by one.
_SPLIT_OFF = (r"[\p{P}\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}"
              r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
              r"\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")


class BertTokenizer:
    """Raw strings -> WordPiece ids (RaggedTensor [B, (tokens)], int32), usable eagerly, in tf.data and in
    exported graphs.

    Args:
        vocab_file: WordPiece `vocab.txt`.
        do_lower_case: True for uncased models (lower-case and strip accents).
        strip_accents: None (BERT: strip exactly when lower-casing), or True / False to decide it separately, as
            Hugging Face's `strip_accents` and keras-hub's tokenizer do.
        max_chars_per_word: longer words become one [UNK] (google-research/bert: 200, Hugging Face: 100).

    Example:
        >>> tok = BertTokenizer.from_pretrained("all-MiniLM-L6-v2")
        >>> tok.tokenize(["Hello, world!"])       # <tf.RaggedTensor [[7592, 1010, 2088, 999]]>
        >>> tok.convert_ids_to_tokens([7592, 1010])  # ['hello', ',']
    """

    def __init__(self, vocab_file: str | os.PathLike, do_lower_case: bool = True, strip_accents: Optional[bool] = None,
                 max_chars_per_word: int = MAX_CHARS_PER_WORD):
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = None if strip_accents is None else bool(strip_accents)
        if isinstance(max_chars_per_word, bool) or not isinstance(max_chars_per_word, int) or max_chars_per_word < 1:
            raise ValueError(f"max_chars_per_word={max_chars_per_word!r} must be a positive integer.")
        self.max_chars_per_word = max_chars_per_word
        self.vocab: List[str] = load_vocab(self.vocab_file)
        warn_if_case_mismatch(self.do_lower_case, self.vocab)
        self._ids = {token: index for index, token in enumerate(self.vocab)}
        self._wordpiece = tf_text.FastBertTokenizer(
            vocab=self.vocab, token_out_type=tf.int32, unknown_token="[UNK]",
            lower_case_nfd_strip_accents=False,
            # Long-word handling is done on characters in normalize(); allow any UTF-8 word within the limit.
            max_bytes_per_word=4 * max_chars_per_word)
        # A character not in the vocabulary, not punctuation: FastBertTokenizer maps it to exactly one [UNK].
        self._unknown_char = next(chr(c) for c in range(0xE000, 0xF8FF) if chr(c) not in self._ids)

    @classmethod
    def from_pretrained(cls, path_or_name) -> "BertTokenizer":
        """Tokenizer of a packaged model name or a model directory, with the settings its producer recorded
        (vocab.txt, Hugging Face tokenizer.json / tokenizer_config.json, a keras-hub preset's tokenizer, a Hub
        module's vocab_file and do_lower_case)."""
        from tfx_transfer.pretrained import resolve_pretrained

        return cls.from_settings(resolve_pretrained(path_or_name).tokenizer)

    @classmethod
    def from_settings(cls, settings) -> "BertTokenizer":
        """From a `TokenizerSettings` (see `tfx_transfer.text.tokenizer_files`)."""
        return cls(settings.vocab_file, settings.do_lower_case, settings.strip_accents, settings.max_chars_per_word)

    @property
    def settings(self):
        """This tokenizer's `TokenizerSettings` (what `save_final` and the writers record beside vocab.txt)."""
        return TokenizerSettings(self.vocab_file, self.do_lower_case, self.strip_accents, self.max_chars_per_word)

    @property
    def strips_accents(self) -> bool:
        return self.do_lower_case if self.strip_accents is None else self.strip_accents

    # ------------------------------------------------------------------ ids of special tokens
    def token_to_id(self, token: str) -> int:
        if token not in self._ids:
            raise KeyError(f"Token {token!r} is not in the vocabulary {self.vocab_file}.")
        return self._ids[token]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def cls_id(self) -> int:
        return self._ids["[CLS]"]

    @property
    def sep_id(self) -> int:
        return self._ids["[SEP]"]

    @property
    def pad_id(self) -> int:
        return self._ids["[PAD]"]

    @property
    def unk_id(self) -> int:
        return self._ids["[UNK]"]

    @property
    def mask_id(self) -> Optional[int]:
        return self._ids.get("[MASK]")

    # ------------------------------------------------------------------ tokenization
    def normalize(self, strings):
        """BERT's text cleaning and (for uncased models) lower-casing + accent stripping. String tensor in/out."""
        s = tf.strings.regex_replace(strings, r"[\x{0000}\x{FFFD}]", "")
        s = tf.strings.regex_replace(s, r"[\t\n\r\p{Zs}]", " ")
        s = tf.strings.regex_replace(s, r"[\p{Cc}\p{Cf}]", "")
        if self.do_lower_case:
            s = tf.strings.lower(s, encoding="utf-8")
        if self.strips_accents:
            s = tf_text.normalize_utf8(s, "NFD")
            s = tf.strings.regex_replace(s, r"\p{Mn}", "")
        return self._replace_long_words(s)

    def _replace_long_words(self, strings):
        """Words of more than `max_chars_per_word` characters become one [UNK], as in BERT's WordpieceTokenizer.

        Only a whitespace-separated chunk longer than the limit can hold such a word, and that is rare, so the
        split-and-rejoin runs only when one exists (keeps the common path ~3x faster).
        """
        def too_long(words):
            return tf.strings.length(words, unit="UTF8_CHAR") > self.max_chars_per_word

        def rewrite():
            words = tf_text.regex_split(strings, _SPLIT_OFF + r"|\s", _SPLIT_OFF)  # [B, (words)]
            words = tf.ragged.map_flat_values(
                lambda w: tf.where(too_long(w), self._unknown_char, w), words)
            return tf.strings.reduce_join(words, axis=-1, separator=" ")

        chunks = tf.strings.split(strings)  # whitespace; [B, (chunks)]
        return tf.cond(tf.reduce_any(too_long(chunks.flat_values)), rewrite, lambda: strings)

    def split_words(self, strings):
        """BERT's words of each raw string, found on the text as given, with their byte offsets into it.

        The boundaries are google-research/bert's `BasicTokenizer`'s: whitespace (tab, newline, carriage return,
        Unicode Zs) separates words and every punctuation or CJK character is a word of its own. Characters that
        BERT's cleaning drops (controls, format characters, U+0000, U+FFFD) stay inside their word here, so a word's
        `normalize` is exactly one of BERT's words, or "" when the word is nothing but such characters.

        Args:
            strings: string tensor [B].

        Returns:
            (words, begin, end): RaggedTensors [B, (W)]: the substrings of the input, and int64 byte offsets, as
            `tensorflow_text.regex_split_with_offsets` gives them.
        """
        return tf_text.regex_split_with_offsets(strings, r"[\t\n\r\p{Zs}]|" + _SPLIT_OFF, _SPLIT_OFF)

    def tokenize(self, strings) -> tf.RaggedTensor:
        """strings: str, list of str or string tensor [B]. Returns int32 RaggedTensor [B, (tokens)]."""
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        if strings.shape.rank == 0:
            strings = strings[None]
        return self._wordpiece.tokenize(self.normalize(strings))

    __call__ = tokenize

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> List[str]:
        return [self.vocab[int(i)] for i in ids]
