"""Text for continued masked-LM pretraining: google-research/bert's corpus format read into documents, and documents
packed into sequences of whole sentences (`create_pretraining_data.py`'s packing without next-sentence pairs).

Corpus format: plain UTF-8 text, one sentence per line, a blank line between documents (google-research/bert's
`sample_text.txt`). A task's own texts (TAPT) are documents of one example each (`documents_of_examples`).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from tfx_transfer.data.pipeline import EncodedSplit

Document = List[str]


class CorpusError(ValueError):
    """A corpus file that cannot be read: the message names the file (and line)."""


def read_documents(paths: Sequence[str]) -> List[Document]:
    """Documents (lists of non-empty sentences) of the corpus files, in order; a file's end ends its document.

    Raises:
        CorpusError: a missing file, bytes that are not UTF-8 (naming the line), or no text at all.
    """
    documents: List[Document] = []
    for path in paths:
        current: Document = []
        try:
            with open(path, "rb") as f:
                for number, raw in enumerate(f, 1):
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError as error:
                        raise CorpusError(f"{path}:{number}: not UTF-8 ({error.reason} at byte {error.start}).") \
                            from None
                    if line:
                        current.append(line)
                    elif current:
                        documents.append(current)
                        current = []
        except FileNotFoundError:
            raise CorpusError(f"{path}: no such file.") from None
        if current:
            documents.append(current)
    if not documents:
        raise CorpusError(f"{', '.join(paths)}: no text (one sentence per line, a blank line between documents).")
    return documents


def documents_of_examples(examples) -> List[Document]:
    """A task's examples (data.examples.InputExample) as documents: text_a (and text_b) of each, labels unused."""
    return [[text for text in (e.text_a, e.text_b) if text] for e in examples if e.text_a or e.text_b]


def pack_pieces(pieces: Sequence[Sequence[int]], ends: Sequence[bool], budget: int,
                current: Sequence[int] = ()) -> Tuple[List[List[int]], List[int]]:
    """The packing rule: consecutive sentences (`pieces`, token ids each) join a row while it has room for them
    (`budget` tokens); a sentence longer than the budget is cut into pieces of `budget` tokens; `ends[i]` ends the
    document after sentence i (its row closes). `current` is a row still open from the sentences before.

    Returns:
        (the closed rows, the row still open).
    """
    rows: List[List[int]] = []
    current = list(current)
    for ids, end in zip(pieces, ends):
        ids = list(ids)
        while len(ids) > budget:  # a sentence too long for one sequence
            if current:
                rows.append(current)
                current = []
            rows.append(ids[:budget])
            ids = ids[budget:]
        if current and len(current) + len(ids) > budget:
            rows.append(current)
            current = []
        current = current + ids
        if end and current:
            rows.append(current)
            current = []
    return rows, current


def pack_documents(documents: Sequence[Document], tokenizer, max_seq_length: int, chunk_size: int = 4096
                   ) -> EncodedSplit:
    """Sequences [CLS] s_1 ... s_k [SEP] of consecutive whole sentences of one document, up to max_seq_length
    tokens; a sentence longer than that is cut into pieces of max_seq_length - 2 tokens. Sequences never cross
    documents. Labels are the word ids themselves ([N, L]); `data.masking.mask_batch` makes the targets.
    """
    budget = max_seq_length - 2
    if budget < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text after [CLS] and [SEP].")
    sentences = [s for d in documents for s in d]
    pieces: List[List[int]] = []
    for start in range(0, len(sentences), chunk_size):
        pieces += [list(row) for row in tokenizer.tokenize(sentences[start:start + chunk_size]).to_list()]
    breaks = np.zeros(len(sentences), bool)
    breaks[np.cumsum([len(d) for d in documents]) - 1] = True  # each document's last sentence ends it
    rows, _ = pack_pieces(pieces, breaks, budget)
    if not rows:
        raise ValueError("No tokens in the corpus (every sentence tokenised to nothing).")
    width = max(len(r) for r in rows) + 2
    word_ids = np.full((len(rows), width), tokenizer.pad_id, np.int32)
    for i, row in enumerate(rows):
        word_ids[i, :len(row) + 2] = [tokenizer.cls_id, *row, tokenizer.sep_id]
    lengths = np.asarray([len(r) + 2 for r in rows], np.int32)
    return EncodedSplit(word_ids, np.zeros_like(word_ids), lengths, word_ids.copy(), [str(i) for i in range(len(rows))])
