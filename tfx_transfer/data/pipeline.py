"""From examples to batches: tokenise once in the TF graph, then length-grouped, deterministic batches.

Tokenisation runs `BertTokenizer`/`BertPacker` (tensorflow-text ops) over the whole split in chunks, ~100k
sentences/s on this CPU, so it never dominates training. Batches are then planned in NumPy:

- training: shuffled with `seed + epoch`, then "sortish": within windows of 50 batches, examples are sorted by
  length and cut into batches, and the batch order is shuffled again (Hugging Face's `group_by_length` makes the
  same windows of 50 batches; fairseq and AllenNLP bucket alike).
- evaluation / prediction: sorted by length (fast), outputs are put back in file order by index.

How far each batch is padded (`padding`, one of PADDINGS):
- "longest": to its own longest row. With the sortish order a batch's rows have nearly equal lengths, so padding
  is nearly gone (SST-2-8k: 13.9 tokens on average where buckets of 16 give 21.8). The model sees any [B, T]: the
  training step and the prediction function are each traced once, for [None, None] (no per-shape retracing).
- "buckets": to the smallest multiple of 16 (up to max_seq_length) that fits: a handful of shapes, which is what
  XLA wants (it compiles once per shape); the default with --jit_compile.
- "max_length": every batch to max_seq_length, in random order (google-research/bert's fixed shapes).

Plans are pure functions of (lengths, seed, epoch), so an interrupted run can skip exactly the batches it
already trained on and see the same data order as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence

import numpy as np

from tfx_transfer.text.packer import BertPacker

BUCKET_STEP = 16
SORT_WINDOW_BATCHES = 50
PADDINGS = ("longest", "buckets", "max_length")


def default_padding(jit_compile: bool) -> str:
    """"buckets" under XLA (one compilation per shape), else "longest"."""
    return "buckets" if jit_compile else "longest"


@dataclasses.dataclass
class EncodedSplit:
    """Packed inputs of a split: int32 [N, L] arrays (L = longest packed example), lengths [N], labels [N] (or
    [N, L] per-token labels, e.g. tags: padded with -1 = ignored, as `data.tagging.IGNORED`)."""

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
                 epoch: int = 0, padding: str = "longest") -> List[Batch]:
    """The batches of one epoch, each padded as `padding` (PADDINGS) says; see the module docstring.
    Deterministic in (lengths, seed, epoch)."""
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}: expected one of {', '.join(PADDINGS)}.")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if padding == "max_length":
        return [Batch(order[i:i + batch_size], max_seq_length) for i in range(0, n, batch_size)]
    if shuffle:
        window = batch_size * SORT_WINDOW_BATCHES
        chunks = [order[i:i + window] for i in range(0, n, window)]
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    else:
        order = order[np.argsort(lengths[order], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    if padding == "longest":
        return [Batch(b, max(1, int(lengths[b].max()))) for b in batches]
    boundaries = np.asarray(bucket_boundaries(max_seq_length))
    return [Batch(b, int(boundaries[np.searchsorted(boundaries, lengths[b].max())])) for b in batches]


def dataset(split: EncodedSplit, batches: Sequence[Batch], with_labels: bool = True):
    """A tf.data.Dataset over planned batches ([B, T] int32 inputs, dynamic shapes), built from TF ops only.

    The split lives in the graph as constants; each element gathers its rows and pads/slices them to the batch's
    length. (A Python generator here costs ~30% of a MiniLM training step on 2 cores: its GIL work competes with
    the step.)
    """
    import tensorflow as tf

    word_ids, type_ids = tf.constant(split.word_ids), tf.constant(split.type_ids)
    lengths = tf.constant(split.lengths)
    width = split.word_ids.shape[1]
    flat = np.concatenate([b.indices for b in batches]).astype(np.int64)
    rows = tf.RaggedTensor.from_row_lengths(flat, [len(b.indices) for b in batches])
    padded_lengths = np.asarray([b.length for b in batches], np.int32)
    labels = tf.constant(split.labels) if with_labels else None
    per_token = with_labels and np.ndim(split.labels) == 2  # [N, L] labels follow the batch's length

    def fit(table, index, length, pad=0):
        values = tf.gather(table, index)  # [B, width]
        values = tf.pad(values, [[0, 0], [0, tf.maximum(0, length - width)]], constant_values=pad)
        return values[:, :length]

    def make(index, length):
        inputs = {"input_word_ids": fit(word_ids, index, length),
                  "input_mask": tf.sequence_mask(tf.gather(lengths, index), length, dtype=tf.int32),
                  "input_type_ids": fit(type_ids, index, length)}
        if not with_labels:
            return inputs
        return inputs, (fit(labels, index, length, pad=-1) if per_token else tf.gather(labels, index))

    data = tf.data.Dataset.from_tensor_slices((rows, padded_lengths)).map(make, num_parallel_calls=PARALLEL_CALLS,
                                                                           deterministic=True)
    return finish_pipeline(data)


PARALLEL_CALLS = max(1, os.cpu_count() or 1)  # each input pipeline map's parallelism (tf.data autotuning is off)
PREFETCH_BATCHES = 2


def finish_pipeline(data):
    """`data` deterministic, without tf.data's autotuning, sharded by data under multi-worker training (each
    worker keeps its slice of every global batch; there are no files to shard), and prefetched.

    Why no autotuning: its model thread (`Model::OptimizeLoop`, started by the iterator) can miss the iterator's
    cancellation and then sleeps out its optimisation period (doubling up to 60 s) while the iterator's
    destructor waits for it. Seen at the end of `fit` in 8 of 14 MiniLM SST-2-8k runs on TensorFlow 2.21: 19-28 s
    between the last training step and the next line (gdb: `RootDataset::Iterator::~Iterator` waiting on that
    thread), a third of the run; none in 8 runs without autotuning (bench/results/tf_data_autotune.md). The pipelines here only gather, pad and tokenise: fixed parallelism
    (`PARALLEL_CALLS`) and a prefetch of `PREFETCH_BATCHES` keep the step fed without it.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options).prefetch(PREFETCH_BATCHES)
