"""The nine GLUE tasks in their released file formats, google-research/bert's processors, plus the generic csv and
tsv tasks and the packaged demo task.

Each processor knows its files, columns, labels and official metrics:

    processor = get_processor("MRPC")
    train = processor.train_examples(data_dir)       # list of InputExample
    processor.labels, processor.metrics               # ["0", "1"], ("accuracy", "f1")
"""

from __future__ import annotations

import copy
import itertools
import dataclasses
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging

from tfx_transfer.data.examples import InputExample, delimiter_name, first_row, iter_rows, read_rows

DEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo")


@dataclasses.dataclass
class Split:
    """Where one split lives and how to read a row: file name, header rows, row -> (text_a, text_b, label)."""

    filename: str
    header: bool
    parse: Callable[[List[str]], Tuple[str, Optional[str], Optional[str]]]
    min_columns: int


class GlueProcessor:
    """A task: its splits, labels (None for regression) and metrics (the first is the official one)."""

    def __init__(self, name, labels, metrics, train, dev, test, extra_dev=None, delimiter="\t", quotechar=None,
                 pairs=False, skip_malformed=False):
        self.name = name
        self.encoding_errors = "strict"  # or "replace" (--encoding_errors)
        # An empty text is packed as [CLS] [SEP] (a pair's empty second text as a second [SEP]), as google-research/bert
        # and Hugging Face do, with one warning per file that counts them; "error" refuses them (--empty_texts).
        self.empty_texts = "keep"
        # QQP: its released train file has a few broken rows; skip them with a warning, as the Hugging Face / GLUE
        # baseline readers do. Every other task stops at the first one, naming its line.
        self.skip_malformed = skip_malformed
        self.pairs = pairs  # examples have a second text (text_b)
        self.delimiter = delimiter
        self.quotechar = quotechar  # None: quotes are text (the GLUE files); '"': RFC 4180 quoting
        self.labels = labels
        self.metrics = metrics
        self.splits = {"train": train, "dev": dev, "test": test}
        self.extra_dev = extra_dev or {}

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    def _examples(self, data_dir: str, split_name: str, split: Split) -> List[InputExample]:
        return list(self._iter_examples(data_dir, split_name, split, read_rows))

    def iter_train_examples(self, data_dir) -> Iterator[InputExample]:
        """The training examples one at a time, read as the iteration goes (constant memory), with the errors and
        warnings of `train_examples`."""
        return self._iter_examples(data_dir, "train", self.splits["train"], iter_rows)

    def _iter_examples(self, data_dir: str, split_name: str, split: Split, reader) -> Iterator[InputExample]:
        if split is None:
            raise ValueError(f"The {self.name} task has no {split_name} file; pass --{split_name}_file.")
        path = os.path.join(data_dir or "", split.filename)
        rows = iter(reader(path, self.delimiter, self.quotechar, encoding_errors=self.encoding_errors))
        first = next(rows, None)
        if first is None:
            raise ValueError(f"{path}: no examples (the file is empty).")
        header_width = len(first.fields) if split.header else None
        if not split.header:
            rows = itertools.chain([first], rows)
        count, skipped, empty = 0, [], []
        for number, row in ((r.line, r.fields) for r in rows):
            if not row:
                continue
            problem = None
            if len(row) < split.min_columns:
                problem = f"{len(row)} column(s), the {self.name} format has at least {split.min_columns}."
            elif header_width is not None and len(row) > header_width:
                problem = self._extra_columns(len(row), header_width)
            else:
                text_a, text_b, label = split.parse(row)
                if not text_a.strip() or (text_b is not None and not text_b.strip()):
                    if self.empty_texts == "error":
                        raise ValueError(f"{path}, line {number}: empty text (--empty_texts=error); remove the row "
                                         "or fill it in.")
                    empty.append(number)
            if problem:
                if not self.skip_malformed:
                    raise ValueError(f"{path}, line {number}: {problem}")
                skipped.append(number)
                continue
            if label is not None and self.labels is not None and label not in self.labels:
                raise ValueError(f"{path}, line {number}: label {label!r} is not one of the {self.name} labels "
                                 f"{self.labels}.")
            if label is not None and self.labels is None:
                try:
                    label = float(label)
                except ValueError as error:
                    raise ValueError(f"{path}, line {number}: score {label!r} is not a number.") from error
            yield InputExample(f"{split_name}-{count}", text_a, text_b, label)
            count += 1
        if not count and not skipped:
            raise ValueError(f"{path}: no examples (the file is empty apart from its header).")
        if skipped:
            logging.warning("%s: skipped %d malformed row(s) (lines %s), as the %s reference processors do.", path,
                            len(skipped), _some(skipped), self.name)
        if empty:
            logging.warning("%s: %d empty text(s) (lines %s), processed as [CLS] [SEP] as google-research/bert and "
                            "Hugging Face do (--empty_texts=error refuses them).", path, len(empty), _some(empty))

    def _extra_columns(self, width, header_width):
        delimiter = delimiter_name(self.delimiter)
        if self.quotechar:
            fix = f"put that text in quotes ({self.quotechar}...{self.quotechar})"
        elif self.name in ("csv", "tsv"):
            fix = "quote that text and pass --quotechar='\"'"
        else:
            fix = "remove it from the text"
        return f"{width} columns but the header has {header_width}: a text probably contains {delimiter} (the " \
               f"delimiter); {fix}."

    def split_path(self, data_dir, split_name: str) -> Optional[str]:
        """The file of `split_name` ("train", "dev", "test" or an extra dev set's name), or None."""
        split = self.splits.get(split_name) or self.extra_dev.get(split_name)
        return os.path.join(data_dir or "", split.filename) if split else None

    def train_examples(self, data_dir):
        return self._examples(data_dir, "train", self.splits["train"])

    def dev_examples(self, data_dir):
        return self._examples(data_dir, "dev", self.splits["dev"])

    def test_examples(self, data_dir):
        return self._examples(data_dir, "test", self.splits["test"])

    def extra_dev_examples(self, data_dir) -> Dict[str, List[InputExample]]:
        """Additional evaluation sets (MNLI's mismatched dev set)."""
        return {name: self._examples(data_dir, name, split) for name, split in self.extra_dev.items()}


def _some(numbers, shown=5):
    """'3, 7, 9' or '3, 7, 9, 12, 15, ...' (the first `shown`)."""
    return ", ".join(map(str, numbers[:shown])) + (", ..." if len(numbers) > shown else "")


def _columns(a, b=None, label=None):
    def parse(row):
        return row[a], (row[b] if b is not None else None), (row[label] if label is not None else None)
    return parse


def _pair_task(name, labels, metrics, a, b, label, test_a, test_b, columns, test_columns, train="train.tsv",
               dev="dev.tsv", test="test.tsv", skip_malformed=False):
    return GlueProcessor(name, labels, metrics, skip_malformed=skip_malformed,
                         train=Split(train, True, _columns(a, b, label), columns),
                         dev=Split(dev, True, _columns(a, b, label), columns),
                         test=Split(test, True, _columns(test_a, test_b), test_columns), pairs=True)


_BINARY = ["0", "1"]
_NLI2 = ["entailment", "not_entailment"]

PROCESSORS: Dict[str, GlueProcessor] = {
    # CoLA train/dev have no header: source, label, original label, sentence.
    "cola": GlueProcessor("CoLA", _BINARY, ("mcc", "accuracy"),
                          train=Split("train.tsv", False, _columns(3, None, 1), 4),
                          dev=Split("dev.tsv", False, _columns(3, None, 1), 4),
                          test=Split("test.tsv", True, _columns(1), 2)),
    "sst-2": GlueProcessor("SST-2", _BINARY, ("accuracy",),
                           train=Split("train.tsv", True, _columns(0, None, 1), 2),
                           dev=Split("dev.tsv", True, _columns(0, None, 1), 2),
                           test=Split("test.tsv", True, _columns(1), 2)),
    "mrpc": _pair_task("MRPC", _BINARY, ("f1", "accuracy"), 3, 4, 0, 3, 4, 5, 5),
    "sts-b": _pair_task("STS-B", None, ("pearson", "spearman"), 7, 8, -1, 7, 8, 10, 9),
    "qqp": _pair_task("QQP", _BINARY, ("f1", "accuracy"), 3, 4, 5, 1, 2, 6, 3, skip_malformed=True),
    "mnli": GlueProcessor("MNLI", ["contradiction", "entailment", "neutral"], ("accuracy",),
                          train=Split("train.tsv", True, _columns(8, 9, -1), 11),
                          dev=Split("dev_matched.tsv", True, _columns(8, 9, -1), 11),
                          test=Split("test_matched.tsv", True, _columns(8, 9), 10),
                          extra_dev={"dev_mismatched": Split("dev_mismatched.tsv", True, _columns(8, 9, -1), 11)},
                          pairs=True),
    "qnli": _pair_task("QNLI", _NLI2, ("accuracy",), 1, 2, -1, 1, 2, 4, 3),
    "rte": _pair_task("RTE", _NLI2, ("accuracy",), 1, 2, -1, 1, 2, 4, 3),
    "wnli": _pair_task("WNLI", _BINARY, ("accuracy",), 1, 2, -1, 1, 2, 4, 3),
    # The packaged demo: short movie-review sentences written for this project (positive / negative).
    "demo": GlueProcessor("demo", ["negative", "positive"], ("accuracy", "f1"),
                          train=Split("train.tsv", True, _columns(0, None, 1), 2),
                          dev=Split("dev.tsv", True, _columns(0, None, 1), 2),
                          test=Split("test.tsv", True, _columns(0), 1)),
}
ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "sts_b": "sts-b"}


GENERIC_TASKS = {"csv": ",", "tsv": "\t"}  # the generic tasks and their default delimiters


def csv_processor(train_file=None, dev_file=None, test_file=None, text_a_column="0", text_b_column=None,
                  label_column="1", label_list=None, delimiter=None, skip_header=True, quotechar='"',
                  name="csv") -> GlueProcessor:
    """A task over any delimited files: columns by index or by header name; `label_list=None` means regression.

    Args:
        delimiter: the field separator (default: a comma for the csv task, a tab for tsv).
        quotechar: RFC 4180 quoting ('"', what spreadsheets export), or None to read quotes as text.
        name: "csv" or "tsv" (the task's name in outputs).
    """
    delimiter = delimiter or GENERIC_TASKS[name]

    def split(path, with_label):
        if path is None:
            return None
        header = []
        if skip_header:
            header = first_row(path, delimiter, quotechar)
            if header is None:
                raise ValueError(f"{path}: no examples (the file is empty).")

        def index(column):
            if column is None:
                return None
            if str(column).lstrip("-").isdigit():
                return int(column)
            if column not in header:
                raise ValueError(f"{path}: no column named {column!r}; the header has {header}.")
            return header.index(column)

        a, b, label = index(text_a_column), index(text_b_column), index(label_column) if with_label else None
        needed = max(abs(i) + (0 if i < 0 else 1) for i in (a, b, label) if i is not None)
        return Split(os.fspath(path), skip_header, _columns(a, b, label), needed)

    if label_list:
        metrics = ("accuracy", "f1") if len(label_list) == 2 else ("accuracy",)
    else:
        metrics = ("pearson", "spearman")
    return GlueProcessor(name, list(label_list) if label_list else None, metrics, train=split(train_file, True),
                         dev=split(dev_file, True), test=split(test_file, False), delimiter=delimiter,
                         quotechar=quotechar, pairs=text_b_column is not None)


def get_processor(task_name: str) -> GlueProcessor:
    """A fresh copy of the named task's processor (its reading options may be set without touching the registry)."""
    key = ALIASES.get(task_name.lower(), task_name.lower())
    if key not in PROCESSORS:
        known = ", ".join(p.name for p in PROCESSORS.values())
        raise ValueError(f"Unknown task_name {task_name!r}; known tasks: {known}, csv and tsv (with --train_file "
                         "etc.).")
    return copy.copy(PROCESSORS[key])


def task_names() -> Sequence[str]:
    return [p.name for p in PROCESSORS.values()] + list(GENERIC_TASKS)
