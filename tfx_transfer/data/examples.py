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


def read_rows(path: str, delimiter: str = "\t", encoding: str = "utf-8-sig") -> List[List[str]]:
    """Rows of a delimited file, with no quote processing (GLUE files contain bare quotes).

    `utf-8-sig` drops the byte-order mark some GLUE files (MRPC) start with.

    Raises:
        FileNotFoundError: naming the path. ValueError: the file is not UTF-8 (naming the line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Data file not found: {path!r}.")
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode(encoding if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}, line {number}: not UTF-8 ({e.reason} at byte {e.start}).") from None
            line = line.rstrip("\r\n")
            rows.append(next(csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE)) if line else [])
    return rows
