"""Small file helpers with the project's error style (name the file, say what was expected)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parses a JSON file.

    Args:
        path: the file.
        what: what the file should be, used in error messages (e.g. "a bert_config.json or config.json").

    Raises:
        FileNotFoundError: no such file. ValueError: not valid JSON.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"File not found: {path!r}; expected {what}.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected {what}.") from e


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike, overwrite: bool = False):
    """Yields a temporary sibling directory that replaces `out_dir` only when the block succeeds.

    A reader of `out_dir` sees either the old complete contents or the new complete contents, never a
    half-written mix; on error the temporary directory is removed and `out_dir` is untouched.

    Args:
        out_dir: final directory.
        overwrite: replace an existing non-empty `out_dir`; otherwise that is an error (raised before any work).

    Raises:
        FileExistsError: `out_dir` exists, is not empty and `overwrite` is False; or it is a file.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.isfile(out_dir):
        raise FileExistsError(f"Output directory {out_dir!r} is a file; choose a directory path.")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f"Output directory {out_dir!r} exists and is not empty; choose another one or pass overwrite "
            "(--overwrite) to replace it."
        )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=parent)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = None
    if os.path.exists(out_dir):
        backup = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-", dir=parent)
        os.rmdir(backup)
        os.rename(out_dir, backup)
    os.rename(tmp, out_dir)
    if backup:
        shutil.rmtree(backup, ignore_errors=True)


def inside(root: str | os.PathLike, *parts: str) -> str:
    """`root/parts...`, refusing a result that symlinks lead outside `root` (a write there would escape it).

    Raises:
        ValueError: naming the path and where it really points.
    """
    root = os.path.realpath(os.fspath(root))
    path = os.path.join(root, *parts)
    real = os.path.realpath(path)
    if real != root and not real.startswith(root + os.sep):
        raise ValueError(f"Refusing to write {path!r}: it resolves to {real!r}, outside {root!r} (a symlink?).")
    return path


def write_text(path: str | os.PathLike, text: str):
    """Writes UTF-8 text through a temporary sibling file and a rename: readers see the old file or the new one,
    never half of one; a failed write removes its temporary file."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"  # open() (not mkstemp) keeps the user's umask permissions
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, value: Any):
    """Writes JSON (indented, sorted keys, UTF-8) atomically (see `write_text`)."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
