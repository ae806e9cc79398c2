"""Word-labelled sentences -> WordPiece model inputs with per-token labels, and token predictions -> word labels.

    split = encode_tagged(sentences, tokenizer, max_seq_length=128, label_list=labels)
    split.features["input_word_ids"]       # int32 [N, L]; N windows (>= number of sentences)
    split.label_ids                        # int32 [N, L]: the word's label id on its first sub-token, -1 elsewhere
    words = decode_tagged(split, logits)   # one label per word of every sentence, in input order

Alignment (Devlin et al. 2019, sec. 5.3: "we use the representation of the first sub-token as the input to the
token-level classifier"): each word is WordPiece-tokenised on its own (BERT's basic tokenisation may split it
further, e.g. "don't" -> don ' t: all its pieces), its label goes on its first sub-token and the others are ignored
in the loss (-1), or with `label_all_tokens` every sub-token carries the word's label (Hugging Face run_ner's option;
predictions still come from the first sub-token). A word that tokenises to nothing (only control or zero-width
characters, which BERT's cleaning drops) is given one [UNK] so that it keeps a position and a prediction.

Long sentences are split into windows of whole words that fit `max_seq_length - 2` pieces ([CLS], [SEP]), so every
word is predicted exactly once (Hugging Face's run_ner truncates instead and drops the labels of the tail); a single
word longer than a window keeps its first pieces.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfx_transfer.data.conll import TaggedSentence
from tfx_transfer.data.pipeline import EncodedSplit

IGNORED = -1  # label id of positions the loss and the metrics skip


@dataclasses.dataclass
class TaggedSplit:
    """Encoded windows of a list of sentences.

    Attributes:
        features: {"input_word_ids", "input_mask", "input_type_ids"}: int32 [N, L].
        label_ids: int32 [N, L] (IGNORED where no label), or None for unlabelled input.
        first_token: bool [N, L]: the first sub-token of a word (where that word's prediction is read).
        window_sentence: int [N]: the sentence each window comes from; windows of a sentence are consecutive.
        sentences: the input sentences.
        label_list: the label names (id = index).
    """

    features: Dict[str, np.ndarray]
    label_ids: Optional[np.ndarray]
    first_token: np.ndarray
    window_sentence: np.ndarray
    sentences: List[TaggedSentence]
    label_list: List[str]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per window (with [CLS] and [SEP]), for length-grouped batching."""
        return self.features["input_mask"].sum(axis=1)

    def __len__(self):
        return len(self.window_sentence)

    def as_encoded(self):
        """The windows as a `pipeline.EncodedSplit` with [N, L] labels: what `jobs.trainer.train` and `predict`
        (per_token=True) take, so tagging trains on length-grouped batches padded to their longest row."""
        return EncodedSplit(self.features["input_word_ids"], self.features["input_type_ids"],
                            self.lengths.astype(np.int32), self.label_ids,
                            [f"{self.sentences[s].guid}#{i}" for i, s in enumerate(self.window_sentence)])


def word_pieces(words: Sequence[str], tokenizer) -> List[List[int]]:
    """The WordPiece ids of each word, tokenised on its own; [UNK] for a word that gives none."""
    if not words:
        return []
    ragged = tokenizer.tokenize(list(words))
    pieces = [list(map(int, ids)) for ids in ragged.to_list()]
    return [ids if ids else [tokenizer.unk_id] for ids in pieces]


def _windows(pieces: List[List[int]], budget: int) -> List[range]:
    """Consecutive word ranges whose pieces fit `budget` (a longer word alone in its window, cut)."""
    windows, start, used = [], 0, 0
    for index, ids in enumerate(pieces):
        if used and used + len(ids) > budget:
            windows.append(range(start, index))
            start, used = index, 0
        used += len(ids)
    if pieces:
        windows.append(range(start, len(pieces)))
    return windows


def encode_tagged(sentences: Sequence[TaggedSentence], tokenizer, max_seq_length: int,
                  label_list: Optional[Sequence[str]] = None, label_all_tokens: bool = False) -> TaggedSplit:
    """Sentences -> windows of model inputs (see the module docstring).

    Args:
        sentences: `TaggedSentence`s; labels may be None (prediction).
        tokenizer: a `BertTokenizer`.
        max_seq_length: L, with [CLS] and [SEP] (>= 3).
        label_list: label names; required when the sentences are labelled. A label not in it is an error.
        label_all_tokens: every sub-token carries its word's label (else only the first).
    """
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length={max_seq_length}: a window needs [CLS], one piece and [SEP].")
    sentences = list(sentences)
    labelled = bool(sentences) and sentences[0].labels is not None
    label_ids_of = {name: i for i, name in enumerate(label_list or [])}
    if labelled and not label_ids_of:
        raise ValueError("encode_tagged: labelled sentences need label_list.")
    all_words = [w for s in sentences for w in s.words]
    all_pieces = word_pieces(all_words, tokenizer)
    ids, labels, first, owner = [], [], [], []
    offset = 0
    for index, sentence in enumerate(sentences):
        if (sentence.labels is not None) != labelled or (labelled and len(sentence.labels) != len(sentence.words)):
            raise ValueError(f"sentence {sentence.guid}: every sentence needs one label per word, or none has any.")
        pieces = all_pieces[offset:offset + len(sentence.words)]
        offset += len(sentence.words)
        for window in _windows(pieces, max_seq_length - 2) or [range(0)]:
            row, row_labels, row_first = [tokenizer.cls_id], [IGNORED], [False]
            for w in window:
                word_ids = pieces[w][:max_seq_length - 2]
                label = IGNORED
                if labelled:
                    name = sentence.labels[w]
                    if name not in label_ids_of:
                        raise ValueError(f"sentence {sentence.guid}: label {name!r} of word {sentence.words[w]!r} "
                                         f"is not in the label list {list(label_ids_of)[:20]}.")
                    label = label_ids_of[name]
                row += word_ids
                row_first += [True] + [False] * (len(word_ids) - 1)
                row_labels += [label] + [label if label_all_tokens else IGNORED] * (len(word_ids) - 1)
            row.append(tokenizer.sep_id), row_labels.append(IGNORED), row_first.append(False)
            ids.append(row), labels.append(row_labels), first.append(row_first), owner.append(index)
    n = len(ids)
    word_ids = np.full((n, max_seq_length), tokenizer.pad_id, np.int32)
    mask = np.zeros((n, max_seq_length), np.int32)
    label_ids = np.full((n, max_seq_length), IGNORED, np.int32)
    first_token = np.zeros((n, max_seq_length), bool)
    for i, (row, row_labels, row_first) in enumerate(zip(ids, labels, first)):
        word_ids[i, :len(row)], mask[i, :len(row)] = row, 1
        label_ids[i, :len(row)], first_token[i, :len(row)] = row_labels, row_first
    features = {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": np.zeros_like(word_ids)}
    return TaggedSplit(features, label_ids if labelled else None, first_token, np.asarray(owner, np.int64),
                       sentences, list(label_list or []))


def decode_tagged(split: TaggedSplit, logits) -> List[List[str]]:
    """Token logits [N, L, num_labels] (or label ids [N, L]) -> the predicted label of every word, per sentence."""
    logits = np.asarray(logits)
    predicted = logits.argmax(-1) if logits.ndim == 3 else logits
    words: List[List[str]] = [[] for _ in split.sentences]
    for window, sentence in enumerate(split.window_sentence):
        words[sentence].extend(split.label_list[int(i)] for i in predicted[window][split.first_token[window]])
    for sentence, got in zip(split.sentences, words):
        if len(got) != len(sentence.words):  # cannot happen with encode_tagged's windows: a broken split
            raise ValueError(f"sentence {sentence.guid}: {len(got)} predictions for {len(sentence.words)} words.")
    return words
