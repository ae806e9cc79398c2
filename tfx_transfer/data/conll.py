"""Word-tagged sentences from CoNLL column files and CoNLL-U (Universal Dependencies) files.

    sentences = read_tagged("train.txt", word_column=0, label_column=-1)     # CoNLL-2003 NER, chunking
    sentences = read_tagged("en_ewt-ud-dev.conllu", label_column="upos")     # UD part-of-speech tags

CoNLL column format (CoNLL-2000/2003): one token per line, columns separated by spaces or tabs, a blank line between
sentences; `-DOCSTART-` lines (document boundaries) are skipped. CoNLL-U (https://universaldependencies.org/format.html):
ten tab-separated columns, `#` comment lines (`# sent_id = ...`, `# text = ...`), and two kinds of lines that are
not words of the tagged sequence, both skipped as UD specifies for word-level annotation: multiword-token ranges
(`1-2  won't`: the surface token whose syntactic words `1 wo`, `2 n't` follow, each with its own UPOS) and empty
nodes (`8.1`, enhanced-dependency nodes without a surface word). Errors name the file and line.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence, Union

CONLLU_TAG_COLUMNS = {"upos": 3, "xpos": 4}


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its words and one label per word (None for unlabelled input).

    Attributes:
        guid: an id, e.g. "dev-12", or the CoNLL-U `sent_id`.
        words: the words (CoNLL-U: syntactic words, multiword tokens split as the treebank splits them).
        labels: the label of each word, or None.
        text: the raw sentence when the file gives it (CoNLL-U `# text =`), else None.
    """

    guid: str
    words: List[str]
    labels: Optional[List[str]] = None
    text: Optional[str] = None


class ConllFormatError(ValueError):
    """A CoNLL / CoNLL-U file that cannot be read; the message names the file and line."""


def is_conllu(path: str) -> bool:
    return os.fspath(path).lower().endswith(".conllu")


def read_tagged(path: str, word_column: int = 0, label_column: Union[int, str, None] = -1,
                set_name: str = "train") -> List[TaggedSentence]:
    """Reads a CoNLL column file or (by the `.conllu` extension) a CoNLL-U file.

    Args:
        path: the file (UTF-8).
        word_column: CoNLL: the word's column (0-based). Ignored for CoNLL-U (column 2, FORM).
        label_column: CoNLL: the label's column (0-based, negative from the end); CoNLL-U: "upos" or "xpos" (or
            3 / 4). None: no labels (prediction input).
        set_name: prefix of the guids of CoNLL files ("train-0", ...).
    """
    if is_conllu(path):
        return read_conllu(path, "upos" if label_column == -1 else label_column)
    return read_conll(path, word_column, label_column, set_name)


def read_conll(path: str, word_column: int = 0, label_column: Optional[int] = -1,
               set_name: str = "train") -> List[TaggedSentence]:
    """CoNLL column file -> sentences (see the module docstring)."""
    sentences, words, labels, first_line = [], [], [], None

    def close():
        if words:
            sentences.append(TaggedSentence(f"{set_name}-{len(sentences)}", list(words),
                                            list(labels) if label_column is not None else None))
        words.clear(), labels.clear()

    for number, line in _lines(path):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == "-DOCSTART-":
            close()
            continue
        if first_line is None:
            first_line = number
        columns = [word_column] + ([label_column] if label_column is not None else [])
        for column in columns:
            if not -len(fields) <= column < len(fields):
                raise ConllFormatError(f"{path}:{number}: {len(fields)} column(s) {fields!r}; column {column} is "
                                       "needed (set --word_column / --label_column).")
        words.append(fields[word_column])
        if label_column is not None:
            labels.append(fields[label_column])
    close()
    return sentences


def read_conllu(path: str, label_column: Union[int, str, None] = "upos") -> List[TaggedSentence]:
    """CoNLL-U file -> sentences of syntactic words with their UPOS or XPOS tags (see the module docstring)."""
    if isinstance(label_column, str):
        if label_column.lower() not in CONLLU_TAG_COLUMNS:
            raise ValueError(f"label_column={label_column!r}: a CoNLL-U tag column is one of "
                             f"{sorted(CONLLU_TAG_COLUMNS)}.")
        label_column = CONLLU_TAG_COLUMNS[label_column.lower()]
    sentences, words, labels = [], [], []
    meta = {}

    def close():
        if words:
            guid = meta.get("sent_id") or f"sentence-{len(sentences)}"
            sentences.append(TaggedSentence(guid, list(words), list(labels) if label_column is not None else None,
                                            meta.get("text")))
        words.clear(), labels.clear(), meta.clear()

    for number, line in _lines(path):
        if not line.strip():
            close()
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep and key.strip() in ("sent_id", "text"):
                meta[key.strip()] = value.strip()
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise ConllFormatError(f"{path}:{number}: a CoNLL-U word line has 10 tab-separated columns, this one "
                                   f"has {len(fields)}: {line[:80]!r}")
        token_id = fields[0]
        if "-" in token_id or "." in token_id:  # multiword-token range or empty node: not a word of the sequence
            continue
        if not token_id.isdigit():
            raise ConllFormatError(f"{path}:{number}: ID {token_id!r} is not a word index, a range or an empty node.")
        words.append(fields[1])
        if label_column is not None:
            label = fields[label_column]
            if label == "_":
                raise ConllFormatError(f"{path}:{number}: word {fields[1]!r} has no tag in column "
                                       f"{label_column + 1} ('_').")
            labels.append(label)
    close()
    return sentences


def label_list(sentences: Sequence[TaggedSentence]) -> List[str]:
    """The labels of `sentences`, sorted, "O" first when present (the convention of NER label lists)."""
    labels = sorted({label for s in sentences for label in (s.labels or [])})
    return (["O"] if "O" in labels else []) + [label for label in labels if label != "O"]


def _lines(path):
    """(1-based number, line without its newline); a UTF-8 BOM is dropped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            yield number, line.rstrip("\r\n")
