"""Task examples and reading tab/comma separated files with clear errors."""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import List, Optional, Union

csv.field_size_limit(2 ** 31 - 1)


@dataclasses.dataclass(frozen=True)
class InputExample:
    """One text classification / regression example (google-research/bert's InputExample).

    Attributes:
        guid: unique id, e.g. "dev-12" (used for the GLUE submission file's index).
        text_a: first text. text_b: second text for pair tasks, else None.
        label: label name (classification), float (regression), or None (test sets).
    """

    guid: str
    text_a: str
    text_b: Optional[str] = None
    label: Optional[Union[str, float]] = None


def read_rows(path: str, delimiter: str = "\t", encoding: str = "utf-8-sig",
              encoding_errors: str = "strict") -> List[List[str]]:
    """Rows of a delimited file, with no quote processing (GLUE files contain bare quotes).

    `utf-8-sig` drops the byte-order mark some GLUE files (MRPC) start with. With encoding_errors="replace",
    undecodable bytes become U+FFFD (and BERT's cleaning then drops them) and a warning counts the lines.

    Raises:
        FileNotFoundError: naming the path. ValueError: the file is not UTF-8 (naming the line and the fix).
    """
    from absl import logging

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Data file not found: {path!r}.")
    rows, replaced = [], 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                if encoding_errors != "replace":
                    raise ValueError(f"{path}, line {number}: not UTF-8 ({e.reason} at byte {e.start}); fix the file "
                                     "or pass --encoding_errors=replace.") from e
                line = raw.decode("utf-8", errors="replace")
                replaced += 1
            line = line.rstrip("\r\n")
            rows.append(next(csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE)) if line else [])
    if replaced:
        logging.warning("%s: %d line(s) had bytes that are not UTF-8; they were replaced.", path, replaced)
    return rows
