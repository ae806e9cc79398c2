"""Task examples, and reading delimited text files (TSV, RFC 4180 CSV) with errors that name the line."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Iterator, List, Optional, Union

from absl import logging

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


@dataclasses.dataclass(frozen=True)
class Row:
    """One record of a delimited file: the fields, and the file line it starts on (1-based; a quoted field may
    hold newlines, so a record can span lines). A blank line is a record without fields."""

    line: int
    fields: List[str]


def delimiter_name(delimiter: str) -> str:
    """How messages name a delimiter: "a tab", "a comma", or the character."""
    return {"\t": "a tab", ",": "a comma", ";": "a semicolon", "|": "a vertical bar"}.get(delimiter,
                                                                                         repr(delimiter))


def _decode(path: str, raw: bytes, encoding_errors: str) -> str:
    """The file's text: UTF-8 with an optional byte-order mark (some GLUE files, MRPC, start with one). With
    encoding_errors="replace", undecodable bytes become U+FFFD (BERT's cleaning then drops them) and a warning
    counts the lines that had them."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        number = raw.count(b"\n", 0, e.start) + 1
        if encoding_errors != "replace":
            raise ValueError(f"{path}, line {number}: not UTF-8 ({e.reason} at byte {e.start - line_start}); fix "
                             "the file or pass --encoding_errors=replace.") from e
    bad_lines = 0
    for line in raw.split(b"\n"):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines += 1
    logging.warning("%s: %d line(s) had bytes that are not UTF-8; they were replaced.", path, bad_lines)
    return raw.decode("utf-8", errors="replace")


def _existing(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Data file not found: {path!r}.")
    return path


def _reader(stream, delimiter: str, quotechar: Optional[str]):
    """csv.reader with RFC 4180 quoting (strict: a quote never closed is an error), or with none (quotechar None)."""
    if quotechar:
        return csv.reader(stream, delimiter=delimiter, quotechar=quotechar, doublequote=True, strict=True)
    return csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE)


def first_row(path: str, delimiter: str = "\t", quotechar: Optional[str] = None) -> Optional[List[str]]:
    """The first record of a delimited file (a header), without reading the rest; None for an empty file. Bad
    bytes are replaced and a broken quote falls back to reading quotes as text: `read_rows` reports both, with
    their lines, when the examples are read."""
    path = _existing(path)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        try:
            return next(_reader(f, delimiter, quotechar), None)
        except csv.Error:
            f.seek(0)
            return next(_reader(f, delimiter, None), None)


def read_rows(path: str, delimiter: str = "\t", quotechar: Optional[str] = None,
              encoding_errors: str = "strict") -> List[Row]:
    """The records of a delimited file.

    Args:
        delimiter: the field separator.
        quotechar: None reads every character literally (the GLUE files, which hold bare quotes inside texts, as
            google-research/bert's reader does). A character, usually '"', reads RFC 4180 quoting: a field in
            quotes may hold the delimiter, newlines and doubled quotes ("" for "), what spreadsheets export.
        encoding_errors: "strict" (a byte that is not UTF-8 is an error naming its line) or "replace".

    Raises:
        FileNotFoundError: naming the path. ValueError: not UTF-8, or a quote that is never closed, naming the line.
    """
    path = _existing(path)
    with open(path, "rb") as f:
        text = _decode(path, f.read(), encoding_errors)
    reader = _reader(io.StringIO(text, newline=""), delimiter, quotechar)
    rows, previous_end = [], 0
    try:
        for fields in reader:
            rows.append(Row(previous_end + 1, fields))
            previous_end = reader.line_num
    except csv.Error as e:
        line = previous_end + 1
        if "end of data" in str(e):
            problem = f"the quote ({quotechar}) opened here is never closed"
        else:
            problem = f"{e} (text after a closing quote)"
        raise ValueError(f"{path}, line {line}: {problem}; quote the whole field and double the quotes inside it "
                         f"({quotechar}{quotechar}), or pass --quotechar=none to read quotes as text.") from e
    return rows


def iter_rows(path: str, delimiter: str = "\t", quotechar: Optional[str] = None,
              encoding_errors: str = "strict") -> Iterator[Row]:
    """`read_rows`, one record at a time from the file (constant memory: training files larger than memory). Errors
    are `read_rows`'s: a byte that is not UTF-8 (strict) makes it read the file whole to name the line."""
    path = _existing(path)
    replaced = 0
    with open(path, encoding="utf-8-sig", errors=encoding_errors, newline="") as f:
        reader = _reader(f, delimiter, quotechar)
        previous_end = 0
        try:
            for fields in reader:
                if encoding_errors == "replace" and any("\ufffd" in field for field in fields):
                    replaced += 1
                yield Row(previous_end + 1, fields)
                previous_end = reader.line_num
        except (UnicodeDecodeError, csv.Error):
            read_rows(path, delimiter, quotechar, encoding_errors)  # raises the error, naming its line
            raise
    if replaced:
        logging.warning("%s: %d record(s) had bytes that are not UTF-8 (or U+FFFD); they were replaced.", path,
                        replaced)
