"""From examples to batches: tokenise once in the TF graph, then length-bucketed, deterministic batches.

Tokenisation runs `BertTokenizer`/`BertPacker` (tensorflow-text ops) over the whole split in chunks, ~100k
sentences/s on this CPU, so it never dominates training. Batches are then planned in NumPy:

- training: shuffled with `seed + epoch`, then "sortish": within windows of 50 batches, examples are sorted by
  length and cut into batches, and the batch order is shuffled again. Each batch is padded to the smallest
  bucket boundary (multiples of 16 up to max_seq_length) that fits it, so short sentences do not pay for
  max_seq_length and only a handful of shapes are ever traced.
- evaluation / prediction: sorted by length (fast), outputs are put back in file order by index.

Plans are pure functions of (lengths, seed, epoch), so an interrupted run can skip exactly the batches it
already trained on and see the same data order as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, List, Optional, Sequence

import numpy as np

BUCKET_STEP = 16
SORT_WINDOW_BATCHES = 50


@dataclasses.dataclass
class EncodedSplit:
    """Packed inputs of a split: int32 [N, L] arrays (L = longest packed example), lengths [N], labels [N]."""

    word_ids: np.ndarray
    type_ids: np.ndarray
    lengths: np.ndarray
    labels: Optional[np.ndarray]
    guids: List[str]

    def __len__(self):
        return len(self.lengths)


def encode_examples(examples, tokenizer, max_seq_length: int, label_list: Optional[Sequence[str]] = None,
                    chunk_size: int = 4096) -> EncodedSplit:
    """Tokenises and packs `examples` ([CLS] a [SEP] (b [SEP]), truncated to max_seq_length).

    Labels: class index into `label_list`, float for regression (label_list None), or None when the split has none.
    """
    from tfx_transfer.text.packer import BertPacker

    if not examples:
        raise ValueError("No examples to encode.")
    packer = BertPacker.for_tokenizer(tokenizer, max_seq_length, pad_to_max_length=True)
    pairs = examples[0].text_b is not None
    word_ids, type_ids = [], []
    for start in range(0, len(examples), chunk_size):
        chunk = examples[start:start + chunk_size]
        segments = [tokenizer.tokenize([e.text_a for e in chunk])]
        if pairs:
            segments.append(tokenizer.tokenize([e.text_b or "" for e in chunk]))
        packed = packer(segments)
        word_ids.append(packed["input_word_ids"].numpy())
        type_ids.append(packed["input_type_ids"].numpy())
    word_ids = np.concatenate(word_ids)
    type_ids = np.concatenate(type_ids)
    lengths = (word_ids != tokenizer.pad_id).sum(axis=1).astype(np.int32)
    longest = int(lengths.max())
    labels = None
    if examples[0].label is not None:
        if label_list is None:
            labels = np.asarray([float(e.label) for e in examples], np.float32)
        else:
            index = {label: i for i, label in enumerate(label_list)}
            labels = np.asarray([index[e.label] for e in examples], np.int32)
    return EncodedSplit(word_ids[:, :longest], type_ids[:, :longest], lengths, labels, [e.guid for e in examples])


def bucket_boundaries(max_seq_length: int, step: int = BUCKET_STEP) -> List[int]:
    return sorted({min(b, max_seq_length) for b in range(step, max_seq_length + step, step)})


@dataclasses.dataclass(frozen=True)
class Batch:
    indices: np.ndarray  # rows of the split
    length: int  # padded length


def plan_batches(lengths: np.ndarray, batch_size: int, max_seq_length: int, shuffle: bool, seed: int = 0,
                 epoch: int = 0, bucket_by_length: bool = True) -> List[Batch]:
    """The batches of one epoch (see the module docstring). Deterministic in (lengths, seed, epoch)."""
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if not bucket_by_length:
        return [Batch(order[i:i + batch_size], max_seq_length) for i in range(0, n, batch_size)]
    boundaries = np.asarray(bucket_boundaries(max_seq_length))
    if shuffle:
        window = batch_size * SORT_WINDOW_BATCHES
        chunks = [order[i:i + window] for i in range(0, n, window)]
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    else:
        order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [Batch(b, int(boundaries[np.searchsorted(boundaries, lengths[b].max())])) for b in batches]


def batch_arrays(split: EncodedSplit, batch: Batch):
    """(inputs dict, labels or None) of one planned batch, padded to batch.length."""
    ids = np.zeros((len(batch.indices), batch.length), np.int32)
    types = np.zeros_like(ids)
    width = min(batch.length, split.word_ids.shape[1])
    ids[:, :width] = split.word_ids[batch.indices, :width]
    types[:, :width] = split.type_ids[batch.indices, :width]
    mask = (np.arange(batch.length)[None, :] < split.lengths[batch.indices, None]).astype(np.int32)
    inputs = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}
    labels = split.labels[batch.indices] if split.labels is not None else None
    return inputs, labels


def dataset(split: EncodedSplit, batches: Sequence[Batch], with_labels: bool = True):
    """A tf.data.Dataset over planned batches (dynamic [B, T] shapes), prefetched."""
    import tensorflow as tf

    def generate() -> Iterator:
        for batch in batches:
            inputs, labels = batch_arrays(split, batch)
            yield (inputs, labels) if with_labels else inputs

    spec = {k: tf.TensorSpec((None, None), tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}
    if with_labels:
        label_dtype = tf.float32 if split.labels.dtype == np.float32 else tf.int32
        spec = (spec, tf.TensorSpec((None,), label_dtype))
    data = tf.data.Dataset.from_generator(generate, output_signature=spec)
    # A known length lets Keras show progress and stop cleanly at the end of the plan.
    return data.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(tf.data.AUTOTUNE)
