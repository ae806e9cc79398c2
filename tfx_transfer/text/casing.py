"""Casing and vocabulary-size checks between a tokenizer setting, its vocabulary and a checkpoint.

In the spirit of google-research/bert's `validate_case_matches_checkpoint`: lower-casing text for a cased
model (or not lower-casing it for an uncased one) silently costs accuracy, so we say so.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Optional, Sequence

# google-research/bert's released checkpoints and their casing.
_GOOGLE_UNCASED = ("uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12", "multilingual_L-12_H-768_A-12",
                   "chinese_L-12_H-768_A-12")
_GOOGLE_CASED = ("cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12")


def vocab_is_cased(vocab: Sequence[str]) -> bool:
    """True when more than 1% of the (non-special) tokens contain upper-case letters."""
    tokens = [t for t in vocab if not (t.startswith("[") and t.endswith("]"))]
    upper = sum(1 for t in tokens if t != t.lower())
    return upper > 0.01 * max(len(tokens), 1)


def case_mismatch(do_lower_case: bool, vocab: Sequence[str], checkpoint_path: Optional[str] = None) -> Optional[str]:
    """A one-line explanation when `do_lower_case` contradicts the vocabulary or a known Google checkpoint name."""
    if checkpoint_path:
        match = re.search(r"(?:^|/)([^/]+)/bert_model\.ckpt", os.fspath(checkpoint_path).replace(os.sep, "/"))
        model = match.group(1) if match else ""
        if model in _GOOGLE_UNCASED and not do_lower_case:
            return (f"do_lower_case=False, but {model} is an uncased model: set do_lower_case=True "
                    "(google-research/bert's check).")
        if model in _GOOGLE_CASED and do_lower_case:
            return (f"do_lower_case=True, but {model} is a cased model: set do_lower_case=False "
                    "(google-research/bert's check).")
    cased = vocab_is_cased(vocab)
    if cased and do_lower_case:
        return ("do_lower_case=True, but the vocabulary is cased (it has many upper-case tokens, which lower-cased "
                "text can never produce): set do_lower_case=False.")
    if not cased and not do_lower_case:
        return ("do_lower_case=False, but the vocabulary is uncased: upper-case words will split into rare pieces "
                "or [UNK]; set do_lower_case=True.")
    return None


def warn_if_case_mismatch(do_lower_case, vocab, checkpoint_path=None):
    message = case_mismatch(do_lower_case, vocab, checkpoint_path)
    if message:
        warnings.warn(message, stacklevel=3)
    return message


def check_vocab_size(vocab_size: int, embedding_rows: int, vocab_file: str = "vocab.txt"):
    """More tokens than embedding rows is an error (ids out of range); fewer is allowed (padded tables) with a
    warning."""
    if vocab_size > embedding_rows:
        raise ValueError(
            f"{vocab_file} has {vocab_size} tokens but the model's word embeddings have {embedding_rows} rows "
            f"(config vocab_size): ids >= {embedding_rows} would be out of range. Use the vocabulary the "
            "checkpoint was trained with."
        )
    if vocab_size < embedding_rows:
        warnings.warn(f"{vocab_file} has {vocab_size} tokens for {embedding_rows} embedding rows; the last "
                      f"{embedding_rows - vocab_size} rows are unused (a padded embedding table).", stacklevel=2)
