"""WordPiece vocabularies (`vocab.txt`: one token per line, id = line number)."""

from __future__ import annotations

import os
from typing import List

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_vocab(path: str | os.PathLike) -> List[str]:
    """Reads `vocab.txt` into a list of tokens (index = id).

    Raises:
        FileNotFoundError / ValueError: missing file, empty vocabulary, missing [UNK]/[CLS]/[SEP]/[PAD],
        duplicate tokens (ids would be ambiguous).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Vocabulary file not found: {path!r}.")
    try:
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); a WordPiece vocab.txt is UTF-8, one token per line.") from e
    while tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise ValueError(f"{path}: the vocabulary is empty.")
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise ValueError(f"{path}: the vocabulary lacks the special token(s) {missing}; is this a BERT vocab.txt?")
    seen = {}
    for index, token in enumerate(tokens):
        if token in seen:
            raise ValueError(
                f"{path}: token {token!r} appears on lines {seen[token] + 1} and {index + 1}; ids would be ambiguous."
            )
        seen[token] = index
    return tokens
