"""Training data larger than memory, streamed so that peak memory does not grow with it.

A text corpus (`StreamedCorpus`, run_pretraining.py) is read, tokenised, packed and batched by tf.data on the fly,
one pass over the files after another (`batches`); pass p is:

    the files in an order seeded by (seed, p) -> lines (TextLineDataset; a file's end ends its document)
      -> WordPiece ids, TOKENIZE_LINES lines per tokenizer call -> sequences of whole sentences of one document
         (`pack_sequences`: data/pretraining.py's `pack_pieces`, the in-memory rule, per chunk of lines)
      -> `shuffle_and_batch`: blocks of --shuffle_buffer sequences, each in a seeded random order, then windows of
         50 batches sorted by length and cut into batches, the batches of a window in a seeded order (the
         in-memory plan's "sortish" order, data/pipeline.py, within a window), each padded as `padding` says.

A training file of examples (`StreamedExamples`, run_classifier.py) is checked and tokenised once, row by row,
into a cache of shuffled shards on disk (`write_example_cache`), streamed through the same `shuffle_and_batch`.

The stream is a pure function of (data, seed), so a resumed run skips the batches it already trained on
(`Dataset.skip`: they are read and prepared again, not trained on) and then sees the same batches as an
uninterrupted run. Under multi-worker training each worker reads the stream and keeps its share of every global
batch (tf.data's DATA auto-sharding), as the in-memory path does: the same batches, masks and weights as one
device (tests/test_distribution.py), whatever the number of workers. Sharding whole files per worker instead would
save each worker the reading of the others' text, but the global batches would then depend on the worker count and
on how the corpus happens to be split into files; and the reading is cheap. Measured here (2026-12-02, 2 cores,
another job running): the counting pass prepared a 25 MB real-text corpus (read, tokenised, packed: 58,510
sequences of <= 128 tokens, ~436 bytes of text each) in 9.8 s, 2.6 MB/s, while training the packaged MiniLM on it
at seq 128, batch 32, ran 5.6 sequences/s, 2.4 KB/s of text: a worker that prepares every worker's text spends
~0.1% x W of its time on it (a larger BERT consumes text more slowly still).

Before training, a corpus is checked in one streamed pass (`check_corpus`: UTF-8, with the file and line of a bad
byte) and, unless the step count is given, counted in another (`len(StreamedCorpus)`, for the learning-rate
schedule).
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import itertools
import os
from typing import Sequence, Tuple

import numpy as np

from tfx_transfer.data.pipeline import (PADDINGS, PARALLEL_CALLS, SORT_WINDOW_BATCHES, bucket_boundaries,
                                       encode_examples, finish_pipeline)
from tfx_transfer.data.pretraining import CorpusError, pack_pieces

TOKENIZE_LINES = 1024
_BLOCK = 1 << 24
# Python's str.strip() whitespace (what the in-memory reader strips) as an RE2 class: ASCII space and controls
# \t-\r, \x1c-\x1f, U+0085 and Unicode separators.
_STRIP = r"^[\s\x1c-\x1f\x{85}\pZ]+|[\s\x1c-\x1f\x{85}\pZ]+$"


@dataclasses.dataclass(frozen=True)
class CorpusFiles:
    """What `check_corpus` found: the files, their total bytes, and per file its lines and SHA-256 (for the model
    card)."""

    paths: Tuple[str, ...]
    bytes: int
    file_lines: Tuple[int, ...]
    sha256: Tuple[str, ...]

    @property
    def lines(self) -> int:
        return sum(self.file_lines)


def check_corpus(paths: Sequence[str]) -> CorpusFiles:
    """Reads every file once in 16 MB blocks (constant memory): each must exist and be UTF-8, and the corpus must
    hold some non-blank text; each file's SHA-256 is taken on the way. ~0.5 GB/s.

    Raises:
        CorpusError: naming the file and the line of the first bad byte, a missing file, or no text.
    """
    total_bytes = 0
    has_text = False
    file_lines, digests = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise CorpusError(f"{path}: no such file.")
        decoder = codecs.getincrementaldecoder("utf-8")()
        digest = hashlib.sha256()
        line = 1
        with open(path, "rb") as f:
            while True:
                block = f.read(_BLOCK)
                digest.update(block)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as error:
                    line += block.count(b"\n", 0, error.start)
                    raise CorpusError(f"{path}:{line}: not UTF-8 ({error.reason} at byte {error.start} of the line's "
                                      "block).") from None
                if not block:
                    break
                has_text = has_text or bool(text.strip())
                line += block.count(b"\n")
                total_bytes += len(block)
        file_lines.append(line - 1)
        digests.append(digest.hexdigest())
    if not has_text:
        raise CorpusError(f"{', '.join(paths)}: no text (one sentence per line, a blank line between documents).")
    return CorpusFiles(tuple(paths), total_bytes, tuple(file_lines), tuple(digests))


def tokenized_lines(paths, tokenizer):
    """tf.data.Dataset of chunks of up to TOKENIZE_LINES lines, in file order: (WordPiece ids int32 RaggedTensor
    [b, (n)], is_break bool [b]); a blank line (and each file's end) is a break: the end of a document."""
    import tensorflow as tf

    def read(path):
        return tf.data.TextLineDataset(path, buffer_size=1 << 20).concatenate(
            tf.data.Dataset.from_tensors(tf.constant("")))

    def tokenize(lines):
        stripped = tf.strings.regex_replace(lines, _STRIP, "")
        return tokenizer.tokenize(stripped), tf.equal(stripped, "")

    lines = tf.data.Dataset.from_tensor_slices(paths).flat_map(read)
    return lines.batch(TOKENIZE_LINES).map(tokenize, num_parallel_calls=PARALLEL_CALLS, deterministic=True)


def pack_sequences(chunks, tokenizer, max_seq_length: int):
    """Sequences [CLS] s_1 ... s_k [SEP] of consecutive whole sentences of one document from `tokenized_lines`, as
    int32 RaggedTensors [rows, (n)], one per chunk of lines: `data.pretraining.pack_pieces`, the in-memory rule, run on each
    chunk (a tf.data scan carries the row still open from one chunk to the next; the rule is a Python loop over
    1,024 lines at a time, ~1 ms of the GIL per chunk)."""
    import tensorflow as tf

    budget = max_seq_length - 2
    if budget < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text after [CLS] and [SEP].")

    def pack(current, values, lengths, ends):
        pieces = np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
        rows, current = pack_pieces([p.tolist() for p in pieces], ends.tolist(), budget, current.tolist())
        flat = np.fromiter((t for row in rows for t in row), np.int32)
        return (np.asarray(current, np.int32), flat, np.asarray([len(r) for r in rows], np.int32))

    def step(current, chunk):
        ids, ends = chunk
        following, values, lengths = tf.numpy_function(
            pack, [current, ids.flat_values, tf.cast(ids.row_lengths(), tf.int32), ends],
            [tf.int32, tf.int32, tf.int32], stateful=False)
        following.set_shape([None])
        return following, tf.RaggedTensor.from_row_lengths(tf.ensure_shape(values, [None]),
                                                           tf.ensure_shape(lengths, [None]))

    def wrap(rows):  # [CLS] row [SEP]
        count = rows.nrows(out_type=tf.int32)
        return tf.concat([tf.fill([count, 1], tokenizer.cls_id), rows, tf.fill([count, 1], tokenizer.sep_id)], 1)

    return chunks.scan(tf.zeros([0], tf.int32), step).map(wrap, num_parallel_calls=PARALLEL_CALLS,
                                                          deterministic=True)


def shuffle_and_batch(examples, *, batch_size: int, max_seq_length: int, pad_id: int, seed, shuffle_buffer: int,
                      padding: str = "longest", shuffle: bool = True):
    """Batches (inputs dict of int32 [B, T], labels [B] or [B, T]) of a stream of examples (word ids int32 [n],
    type ids int32 [n], label: a scalar, or int32 [n] per token: padded with -1, ignored).

    Shuffled in blocks of `shuffle_buffer` examples (each block in a random order seeded by (`seed`, its index):
    memory for one block, every example moves within its block; `seed` is an int64 scalar, a tensor in a pass);
    with "longest" / "buckets" padding, each window of SORT_WINDOW_BATCHES batches is sorted by length, cut into
    batches, and its full batches put in a seeded order (the window's last, short batch stays last), as
    data/pipeline.py plans in-memory epochs; "max_length": random order, every batch max_seq_length long.
    """
    import tensorflow as tf

    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}: expected one of {', '.join(PADDINGS)}.")
    seed = tf.cast(seed, tf.int64)

    def gather(block, order):
        return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda t: tf.gather(t, order), block))

    if shuffle:  # a block shuffle, stateless (tf.data's shuffle cannot take a per-pass seed tensor when --seed=0)
        def permute(index, block):
            count = tf.shape(block[1].row_lengths())[0]
            return gather(block, tf.argsort(tf.random.stateless_uniform([count], tf.stack([seed, index]))))

        examples = examples.ragged_batch(shuffle_buffer).enumerate().flat_map(permute)
    if padding != "max_length":
        def sortish(index, block):
            lengths = block[0].row_lengths()
            count = tf.shape(lengths, out_type=tf.int32)[0]
            order = tf.argsort(lengths, stable=True)
            full = count // batch_size
            blocks = tf.range(full)
            if shuffle:
                blocks = tf.argsort(tf.random.stateless_uniform([full], tf.stack([seed + 1_000_000_007, index])))
            batched = tf.reshape(tf.gather(tf.reshape(order[:full * batch_size], [full, batch_size]), blocks), [-1])
            return gather(block, tf.concat([batched, order[full * batch_size:]], 0))

        examples = examples.ragged_batch(batch_size * SORT_WINDOW_BATCHES).enumerate().flat_map(sortish)
    per_token = examples.element_spec[2].shape.rank == 1
    shapes = [max_seq_length] if padding == "max_length" else [None]
    label_pad = tf.constant(-1, examples.element_spec[2].dtype)
    batches = examples.map(lambda ids, types, label: (ids, types, label, tf.size(ids))).padded_batch(
        batch_size, padded_shapes=(shapes, shapes, shapes if per_token else [], []),
        padding_values=(pad_id, 0, label_pad, 0))
    boundaries = tf.constant(bucket_boundaries(max_seq_length), tf.int32)

    def make(word_ids, type_ids, labels, lengths):
        if padding == "buckets":
            width = tf.shape(word_ids)[1]
            extra = tf.gather(boundaries, tf.searchsorted(boundaries, tf.reshape(width, [1]))[0]) - width
            word_ids = tf.pad(word_ids, [[0, 0], [0, extra]], constant_values=pad_id)
            type_ids = tf.pad(type_ids, [[0, 0], [0, extra]])
            if per_token:
                labels = tf.pad(labels, [[0, 0], [0, extra]], constant_values=label_pad)
        mask = tf.sequence_mask(lengths, tf.shape(word_ids)[1], dtype=tf.int32)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}, labels

    return batches.map(make, num_parallel_calls=PARALLEL_CALLS, deterministic=True)


class StreamedCorpus:
    """A text corpus as training data without holding it: `len()` is its number of packed sequences (counted by one
    streamed pass), `batches(...)` the endless stream of training batches, pass after pass (module docstring).
    Stands in for an in-memory `EncodedSplit` in `jobs.trainer.train`."""

    streamed = True

    def __init__(self, files: CorpusFiles, tokenizer, max_seq_length: int, shuffle_buffer: int = 10_000,
                 num_sequences: int = None):
        self.files, self.tokenizer, self.max_seq_length = files, tokenizer, max_seq_length
        self.shuffle_buffer = shuffle_buffer
        self._count = num_sequences

    def _packed(self, paths):
        return pack_sequences(tokenized_lines(paths, self.tokenizer), self.tokenizer, self.max_seq_length)

    def sequences(self):
        """The packed sequences (int32 [n]) in file order."""
        return self._packed(tf_constant(self.files.paths)).unbatch()

    def __len__(self):
        if self._count is None:
            self._count = count_rows(self._packed(tf_constant(self.files.paths)))
        return self._count

    def batches(self, *, batch_size: int, seed: int, padding: str = "longest", passes: int = 1 << 40):
        """Pass p over the corpus (p = 0, 1, ...): the files in a permutation seeded by (seed, p), the sequences
        shuffled and batched by `shuffle_and_batch` seeded by (seed, p); each pass ends with its own short batch."""
        import tensorflow as tf

        def examples(paths):  # labels: the tokens themselves (the masking makes the targets)
            return self._packed(paths).unbatch().map(lambda row: (row, tf.zeros_like(row), row))

        return seeded_passes(self.files.paths, examples, batch_size=batch_size, max_seq_length=self.max_seq_length,
                             pad_id=self.tokenizer.pad_id, seed=seed, shuffle_buffer=self.shuffle_buffer,
                             padding=padding, passes=passes)


def seeded_passes(paths, examples, *, batch_size: int, max_seq_length: int, pad_id: int, seed: int,
                  shuffle_buffer: int, padding: str, passes: int):
    """The endless stream of both streamed sources: pass p = `examples(paths in a permutation seeded by (seed, p))`
    through `shuffle_and_batch` seeded by (seed, p), pass after pass."""
    import tensorflow as tf

    constant = tf_constant(paths)

    def one_pass(p):
        pass_seed = tf.constant(seed, tf.int64) * 1_000_003 + p
        order = tf.argsort(tf.random.stateless_uniform([len(paths)], tf.stack([pass_seed, 7])))
        return shuffle_and_batch(examples(tf.gather(constant, order)), batch_size=batch_size,
                                 max_seq_length=max_seq_length, pad_id=pad_id, seed=pass_seed,
                                 shuffle_buffer=shuffle_buffer, padding=padding)

    return finish_pipeline(tf.data.Dataset.range(passes).flat_map(one_pass))


def tf_constant(values):
    import tensorflow as tf

    return tf.constant(list(values), tf.string)


def count_rows(chunks) -> int:
    """The number of rows of a dataset of RaggedTensors [rows, (n)], counted in one pass (constant memory)."""
    import tensorflow as tf

    return int(finish_pipeline(chunks).reduce(tf.constant(0, tf.int64),
                                              lambda count, rows: count + rows.nrows(out_type=tf.int64)))


CACHE_SHARDS = 32


class StreamedExamples:
    """A training file's examples tokenised once into a cache on disk (`write_example_cache`) and streamed from it:
    `len()` examples per pass, `batches(...)` the endless stream of batches. Stands in for an in-memory
    `EncodedSplit` in `jobs.trainer.train`.

    The cache is CACHE_SHARDS files of fixed-length records (int32 length, int32 segment-A length, the label as
    int32 class index or float32 bits, then max_seq_length word ids, uint16 when the vocabulary fits). Each example
    went to a random shard and each shard was shuffled once (seeded), so a shard is a random sample of the file in
    random order; pass p reads the shards in a permutation seeded by (seed, p), four interleaved, through
    `shuffle_and_batch`. A file sorted by label thus still gives mixed batches, with memory for one block."""

    streamed = True

    def __init__(self, directory: str, meta: dict, shuffle_buffer: int = 10_000):
        self.directory, self.meta, self.shuffle_buffer = directory, meta, shuffle_buffer
        self.max_seq_length = meta["max_seq_length"]

    def __len__(self):
        return self.meta["examples"]

    @property
    def shard_paths(self):
        return [os.path.join(self.directory, f"shard-{i:03d}.bin") for i in range(self.meta["shards"])]

    def examples(self, paths=None):
        """(word ids int32 [n], type ids int32 [n], label) of the shards in order."""
        import tensorflow as tf

        id_bytes, length = self.meta["id_bytes"], self.max_seq_length
        id_type = tf.uint16 if id_bytes == 2 else tf.int32
        regression = self.meta["regression"]

        def decode(record):
            header = tf.io.decode_raw(tf.strings.substr(record, 0, 12), tf.int32)
            ids = tf.cast(tf.io.decode_raw(tf.strings.substr(record, 12, id_bytes * length), id_type), tf.int32)
            n = header[0]
            types = tf.cast(tf.range(n) >= header[1], tf.int32)
            label = tf.bitcast(header[2], tf.float32) if regression else header[2]
            return ids[:n], types, label

        paths = tf_constant(self.shard_paths) if paths is None else paths
        records = tf.data.Dataset.from_tensor_slices(paths).interleave(
            lambda path: tf.data.FixedLengthRecordDataset(path, 12 + id_bytes * length, buffer_size=1 << 18),
            cycle_length=4, block_length=1)
        return records.map(decode, num_parallel_calls=PARALLEL_CALLS, deterministic=True)

    def batches(self, *, batch_size: int, seed: int, padding: str = "longest", passes: int = 1 << 40):
        return seeded_passes(self.shard_paths, self.examples, batch_size=batch_size,
                             max_seq_length=self.max_seq_length, pad_id=self.meta["pad_id"], seed=seed,
                             shuffle_buffer=self.shuffle_buffer, padding=padding, passes=passes)


def write_example_cache(examples, tokenizer, max_seq_length: int, label_list, directory: str, seed: int,
                        source: dict, shuffle_buffer: int = 10_000, chunk_size: int = 4096) -> StreamedExamples:
    """Tokenises `examples` (an iterable of InputExample, read lazily) chunk by chunk into the cache `directory`
    (see StreamedExamples), in constant memory; reuses a complete cache made from the same `source` (the file's
    path, size and modification time), tokenizer, length, labels and seed. Written into a temporary directory and
    renamed: a cache is whole or absent."""
    import json
    import shutil

    meta = {"source": source, "vocab_size": tokenizer.vocab_size, "vocab_file": os.path.abspath(tokenizer.vocab_file),
            "do_lower_case": tokenizer.do_lower_case, "max_seq_length": max_seq_length, "seed": seed,
            "labels": list(label_list) if label_list is not None else None, "regression": label_list is None,
            "pad_id": tokenizer.pad_id, "id_bytes": 2 if tokenizer.vocab_size <= 1 << 16 else 4,
            "shards": CACHE_SHARDS}
    meta_path = os.path.join(directory, "cache.json")
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            existing = json.load(f)
        if {k: v for k, v in existing.items() if k != "examples"} == meta:
            return StreamedExamples(directory, existing, shuffle_buffer)
    tmp = directory + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    id_type = np.uint16 if meta["id_bytes"] == 2 else np.int32
    rng = np.random.default_rng([seed, 13])
    shard_files = [open(os.path.join(tmp, f"shard-{i:03d}.bin"), "wb") for i in range(CACHE_SHARDS)]
    try:
        count = _write_shards(examples, tokenizer, max_seq_length, label_list, shard_files, id_type, rng, chunk_size)
    except BaseException:
        for f in shard_files:
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left
        raise
    for f in shard_files:
        f.close()
    record_bytes = 12 + meta["id_bytes"] * max_seq_length
    for i in range(CACHE_SHARDS):  # each shard in a random order (one shard in memory at a time)
        path = os.path.join(tmp, f"shard-{i:03d}.bin")
        records = np.fromfile(path, np.uint8).reshape(-1, record_bytes)
        records[rng.permutation(len(records))].tofile(path)
    meta["examples"] = count
    with open(os.path.join(tmp, "cache.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return StreamedExamples(directory, meta, shuffle_buffer)


def _write_shards(examples, tokenizer, max_seq_length, label_list, shard_files, id_type, rng, chunk_size) -> int:
    """Tokenises chunk by chunk, each example's record appended to a random shard; returns the examples' count."""
    count, chunk = 0, []
    for example in itertools.chain(examples, [None]):
        if example is not None:
            chunk.append(example)
            if len(chunk) < chunk_size:
                continue
        if not chunk:
            break
        split = encode_examples(chunk, tokenizer, max_seq_length, label_list)
        n, width = split.word_ids.shape
        ids = np.zeros((n, max_seq_length), id_type)
        ids[:, :width] = split.word_ids
        labels = split.labels.astype(np.float32 if label_list is None else np.int32).view(np.int32)
        segment_a = np.where(split.type_ids == 0, 1, 0).sum(axis=1) - (width - split.lengths)  # real type-0
        header = np.stack([split.lengths, segment_a, labels], axis=1).astype(np.int32)
        records = np.concatenate([header.view(np.uint8).reshape(n, 12), ids.view(np.uint8).reshape(n, -1)], 1)
        shards = rng.integers(CACHE_SHARDS, size=n)
        for shard in np.unique(shards):
            shard_files[shard].write(records[shards == shard].tobytes())
        count += n
        chunk = []
    return count
