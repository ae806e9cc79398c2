"""Every input file a run_classifier.py run needs, read and checked before the model is built: the task's train,
dev (and MNLI's mismatched dev) and test files, the teacher's probabilities (--teacher_probabilities) and the
auxiliary tasks' files (--auxiliary_tasks). A bad dev file then fails in seconds, not after training."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import logging

from tfx_transfer.adaptation.ensembling import average_probabilities, read_probabilities
from tfx_transfer.data.examples import InputExample
from tfx_transfer.data.glue import DEMO_DIR, GlueProcessor, get_processor
from tfx_transfer.data.streaming import write_example_cache
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import ClassifierOptions


@dataclasses.dataclass
class AuxiliaryTask:
    """One --auxiliary_tasks entry: its processor, directory and examples (dev only with --do_eval)."""

    processor: GlueProcessor
    data_dir: str
    train: List[InputExample]
    dev: Optional[List[InputExample]] = None


@dataclasses.dataclass
class ClassifierData:
    """The examples of each split the run uses (None: not needed), the averaged teacher probabilities [N, C] and
    the auxiliary tasks. `files`: (role, path, examples) of every file read, for the model card."""

    train: Optional[List[InputExample]] = None
    dev: Optional[List[InputExample]] = None
    extra_dev: Dict[str, List[InputExample]] = dataclasses.field(default_factory=dict)
    test: Optional[List[InputExample]] = None
    teacher: Optional[np.ndarray] = None
    auxiliary: List[AuxiliaryTask] = dataclasses.field(default_factory=list)
    files: List[Tuple[str, str, int]] = dataclasses.field(default_factory=list)


def read_classifier_data(o: ClassifierOptions, processor: GlueProcessor, data_dir: Optional[str],
                         tokenizer=None) -> ClassifierData:
    """Reads and validates every file the options name (see the module docstring). A streamed training file
    (`streams_training_file`) is read once, row by row, into a tokenised cache (`tokenizer` needed): `data.train`
    is then a `data.streaming.StreamedExamples`."""
    data = ClassifierData()

    def read(role, examples):
        data.files.append((role, processor.split_path(data_dir, role), len(examples)))
        return examples

    if o.do_train and streams_training_file(o, processor.split_path(data_dir, "train")):
        data.train = _streamed_training_file(o, processor, data_dir, tokenizer)
        data.files.append(("train", processor.split_path(data_dir, "train"), len(data.train)))
    elif o.do_train:
        data.train = read("train", processor.train_examples(data_dir))
        if o.training.max_train_examples:
            data.train = data.train[:o.training.max_train_examples]
        if o.teacher_probabilities:
            data.teacher = _teacher_probabilities(o, len(data.train), data.files)
        if o.auxiliary_tasks:
            data.auxiliary = _auxiliary_tasks(o, processor, data.files)
    if o.do_eval:
        data.dev = read("dev", processor.dev_examples(data_dir))
        data.extra_dev = {name: read(name, examples) for name, examples in
                          processor.extra_dev_examples(data_dir).items()}
    if o.do_predict:
        data.test = read("test", processor.test_examples(data_dir))
    return data


STREAM_ABOVE_BYTES = 32 << 20  # --streaming=auto streams training files larger than this


def streams_training_file(o: ClassifierOptions, path: Optional[str]) -> bool:
    """--streaming: on, off, or auto (the training file is larger than STREAM_ABOVE_BYTES)."""
    if o.streaming != "auto":
        return o.streaming == "on"
    return path is not None and os.path.isfile(path) and os.path.getsize(path) > STREAM_ABOVE_BYTES


def _streamed_training_file(o: ClassifierOptions, processor: GlueProcessor, data_dir, tokenizer):
    """The training file tokenised into output_dir/train_cache (data/streaming.py), in constant memory; every row
    is checked as `train_examples` checks it, before the model is built."""
    unsupported = [flag for flag, given in (("--teacher_probabilities", o.teacher_probabilities),
                                            ("--auxiliary_tasks", o.auxiliary_tasks),
                                            ("--write_train_probabilities", o.write_train_probabilities),
                                            ("--probe_layers", o.probe_layers), ("--ewc", o.training.ewc)) if given]
    if unsupported:
        raise FlagError(f"{', '.join(unsupported)} need(s) the training examples in memory; a streamed training "
                        "file (--streaming) does not combine with it (pass --streaming=off).")
    if o.shuffle_buffer < 1:
        raise FlagError(f"--shuffle_buffer={o.shuffle_buffer} must be >= 1.")
    path = processor.split_path(data_dir, "train")
    examples = processor.iter_train_examples(data_dir)
    if o.training.max_train_examples:
        examples = itertools.islice(examples, o.training.max_train_examples)
    stat = os.stat(path)
    source = {"path": os.path.abspath(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
              "max_train_examples": o.training.max_train_examples, "task": processor.name}
    start = time.perf_counter()
    split = write_example_cache(examples, tokenizer, o.max_seq_length, processor.labels,
                                os.path.join(o.output.output_dir, "train_cache"), o.training.seed, source,
                                shuffle_buffer=o.shuffle_buffer)
    logging.info("Streaming the training file: %d examples in %s (%.1f s to check and tokenise, or reused).",
                 len(split), split.directory, time.perf_counter() - start)
    return split


def _teacher_probabilities(o: ClassifierOptions, num_train: int, files) -> np.ndarray:
    try:
        teachers = [read_probabilities(path) for path in o.teacher_probabilities]
        probabilities = average_probabilities(teachers)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--teacher_probabilities: {e}") from e
    if len(probabilities) != num_train:
        raise FlagError(f"--teacher_probabilities: {len(probabilities)} teacher rows for {num_train} training "
                        "examples (same --task_name, data and --max_train_examples as the teacher run?)")
    files.extend(("teacher", path, len(t)) for path, t in zip(o.teacher_probabilities, teachers))
    return probabilities


def _auxiliary_tasks(o: ClassifierOptions, target: GlueProcessor, files) -> List[AuxiliaryTask]:
    tasks, names = [], {target.name}
    for entry in o.auxiliary_tasks:
        name, _, data_dir = entry.partition(":")
        try:
            processor = get_processor(name)
        except ValueError as e:
            raise FlagError(f"--auxiliary_tasks={entry}: {e}") from e
        if processor.name in names:
            raise FlagError(f"--auxiliary_tasks: {processor.name} is given twice (or is the target task).")
        names.add(processor.name)
        if processor.name == "demo":
            data_dir = data_dir or DEMO_DIR
        if not data_dir or not os.path.isdir(data_dir):
            raise FlagError(f"--auxiliary_tasks={entry}: give TASK:DATA_DIR with an existing directory.")
        processor.encoding_errors, processor.empty_texts = o.encoding_errors, o.empty_texts
        train = processor.train_examples(data_dir)
        if o.training.max_train_examples:
            train = train[:o.training.max_train_examples]
        dev = processor.dev_examples(data_dir) if o.do_eval else None
        files.append((f"{processor.name} train", processor.split_path(data_dir, "train"), len(train)))
        if dev is not None:
            files.append((f"{processor.name} dev", processor.split_path(data_dir, "dev"), len(dev)))
        tasks.append(AuxiliaryTask(processor, data_dir, train, dev))
    return tasks
