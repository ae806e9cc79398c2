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


def _tokenize(sentences: Sequence[str], tokenizer, chunk_size: int) -> List[List[int]]:
    """WordPiece ids of each sentence, `chunk_size` sentences per tokenizer call."""
    pieces: List[List[int]] = []
    for start in range(0, len(sentences), chunk_size):
        pieces += [list(row) for row in tokenizer.tokenize(sentences[start:start + chunk_size]).to_list()]
    return pieces


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
    pieces = _tokenize(sentences, tokenizer, chunk_size)
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


IS_NEXT, RANDOM_NEXT = 0, 1  # next-sentence labels (google-research/bert's and transformers' convention)


def next_sentence_pairs(documents: Sequence[Document], tokenizer, max_seq_length: int, seed: int,
                        short_seq_prob: float = 0.1, chunk_size: int = 4096) -> EncodedSplit:
    """Sequences [CLS] A [SEP] B [SEP] for next-sentence prediction, made as google-research/bert's
    `create_pretraining_data.py` makes them (`create_instances_from_document`, one duplicate): sentences of a
    document gather into a chunk up to a target length (max_seq_length - 3, or with probability `short_seq_prob` a
    random shorter one); A is the chunk's first 1..k-1 sentences; B is the rest of the chunk (label IS_NEXT) or, half
    the time and whenever the chunk has one sentence, text from a random other document (RANDOM_NEXT; the chunk's
    unused sentences go back to the document); the longer of A and B loses tokens from a random end until the pair
    fits. The pairs are drawn once, from `seed` (masks stay dynamic).

    Returns:
        EncodedSplit: word_ids / type_ids int32 [N, L] (type 0 for [CLS] A [SEP], 1 for B [SEP]), lengths [N],
        labels int32 [N] (IS_NEXT / RANDOM_NEXT).
    Raises:
        ValueError: max_seq_length leaves no room for a pair, or no document has two sentences (every pair would be
            a random one: the task would teach nothing).
    """
    budget = max_seq_length - 3
    if budget < 2:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for a sentence pair ([CLS] A [SEP] B [SEP]).")
    pieces = _tokenize([s for d in documents for s in d], tokenizer, chunk_size)
    tokenized, at = [], 0
    for document in documents:
        kept = [p for p in pieces[at:at + len(document)] if p]
        at += len(document)
        if kept:
            tokenized.append(kept)
    if not any(len(d) >= 2 for d in tokenized):
        raise ValueError("Next-sentence prediction needs documents of two or more sentences (a blank line between "
                         "documents, one sentence per line); every document here has one, so every pair would be a "
                         "random one.")
    pairs = pair_documents(tokenized, budget, seed, short_seq_prob)
    word_ids = np.full((len(pairs), max(len(a) + len(b) for a, b, _ in pairs) + 3), tokenizer.pad_id, np.int32)
    type_ids = np.zeros_like(word_ids)
    for i, (a, b, _) in enumerate(pairs):
        row = [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
        word_ids[i, :len(row)] = row
        type_ids[i, len(a) + 2:len(row)] = 1
    lengths = np.asarray([len(a) + len(b) + 3 for a, b, _ in pairs], np.int32)
    labels = np.asarray([label for _, _, label in pairs], np.int32)
    return EncodedSplit(word_ids, type_ids, lengths, labels, [str(i) for i in range(len(pairs))])


def pair_documents(documents, budget: int, seed: int, short_seq_prob: float = 0.1):
    """The sentence pairs of `documents` (each a list of sentences, each a non-empty list of tokens of any kind):
    google-research/bert's `create_instances_from_document` over the documents in order with one
    `random.Random(seed)`, drawing exactly its random numbers (masking aside, which is not done here).
    `budget` = max_seq_length - 3. Returns [(tokens_a, tokens_b, IS_NEXT | RANDOM_NEXT)]."""
    import random

    rng = random.Random(seed)
    pairs = []
    for index in range(len(documents)):
        pairs += _document_pairs(documents, index, budget, short_seq_prob, rng)
    return pairs


def _document_pairs(documents, index, budget, short_seq_prob, rng):
    """google-research/bert's `create_instances_from_document` for documents[index] (lists of token-id lists):
    [(tokens_a, tokens_b, label)]."""
    document = documents[index]
    target = rng.randint(2, budget) if rng.random() < short_seq_prob else budget
    pairs, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for s in chunk[:a_end] for t in s]
            tokens_b = []
            if len(chunk) == 1 or rng.random() < 0.5:
                label = RANDOM_NEXT
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != index:
                        break
                random_document = documents[other]
                for sentence in random_document[rng.randint(0, len(random_document) - 1):]:
                    tokens_b.extend(sentence)
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                i -= len(chunk) - a_end  # the chunk's unused sentences go back
            else:
                label = IS_NEXT
                tokens_b = [t for s in chunk[a_end:] for t in s]
            _truncate_pair(tokens_a, tokens_b, budget, rng)
            if tokens_a and tokens_b:
                pairs.append((tokens_a, tokens_b, label))
            chunk, length = [], 0
        i += 1
    return pairs


def _truncate_pair(tokens_a, tokens_b, budget, rng):
    """google-research/bert's `truncate_seq_pair`: the longer list loses a token from its front or back (at random)
    until both fit in `budget`."""
    while len(tokens_a) + len(tokens_b) > budget:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()
