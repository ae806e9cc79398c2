"""Small file helpers with the project's error style (name the file, say what was expected)."""

from __future__ import annotations

import json
import os
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
        raise ValueError(f"{path}: not valid JSON ({e}); expected {what}.") from None
