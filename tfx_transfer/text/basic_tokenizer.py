"""BERT's "basic" tokenisation in plain Python (clean text, split CJK and punctuation, optionally lower-case and
strip accents), the step before WordPiece.

The in-graph `BertTokenizer` does the same with TF ops; this version returns strings and is what SQuAD
post-processing needs to map a WordPiece answer back onto the original context (google-research/bert's
`get_final_text`).
"""

from __future__ import annotations

import unicodedata
from typing import List

_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_punctuation(char: str) -> bool:
    cp = ord(char)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(char).startswith("P")


def _clean(text: str) -> str:
    out = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or (char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")):
            continue
        out.append(" " if char in " \t\n\r" or unicodedata.category(char) == "Zs" else char)
    return "".join(out)


def basic_tokenize(text: str, do_lower_case: bool = True) -> List[str]:
    """Words and punctuation marks of `text`, as google-research/bert's BasicTokenizer returns them."""
    text = "".join(f" {c} " if any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES) else c for c in _clean(text))
    words = []
    for token in text.split():
        if do_lower_case:
            token = "".join(c for c in unicodedata.normalize("NFD", token.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for char in token:
            if is_punctuation(char):
                if current:
                    words.append(current)
                words.append(char)
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    return words
