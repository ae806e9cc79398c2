"""A pure-Python reference of google-research/bert's FullTokenizer algorithm (BasicTokenizer + WordPiece).

Written from the published algorithm: clean text, split CJK characters, split on whitespace, lower-case and strip
accents (uncased), split punctuation, then greedy longest-match-first WordPiece with [UNK] for words over `max_chars`
characters (google-research/bert: 200, Hugging Face: 100). Used only as the ground truth in tests.
"""

import unicodedata


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokenize(text, do_lower_case):
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        cleaned.append(" " if _is_whitespace(ch) else ch)
    spaced = "".join(f" {ch} " if _is_cjk(ord(ch)) else ch for ch in cleaned)
    words = []
    for token in spaced.split():
        if do_lower_case:
            token = token.lower()
            token = "".join(ch for ch in unicodedata.normalize("NFD", token) if unicodedata.category(ch) != "Mn")
        current = []
        for ch in token:
            if _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
    return words


def wordpiece(word, vocab, unk="[UNK]", max_chars=200):
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end, piece = len(word), None
        while start < end:
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


def reference_ids(text, vocab_list, do_lower_case=True, max_chars=200):
    vocab = {token: i for i, token in enumerate(vocab_list)}
    return [vocab[p] for word in basic_tokenize(text, do_lower_case) for p in wordpiece(word, vocab, max_chars=max_chars)]


def truncate_seq_pair(tokens_a, tokens_b, max_length):
    """google-research/bert's _truncate_seq_pair: pop from the longer one until the pair fits."""
    tokens_a, tokens_b = list(tokens_a), list(tokens_b)
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()
    return tokens_a, tokens_b
