"""Name tables: one declarative row per encoder tensor, per checkpoint dialect, read in both directions.

A `NameTable` lists, for every variable of `BertEncoder`, the dialect's tensor name and how the array changes
between the two layouts. From one table we derive
  - the built-in `AssignmentMap` for reading (regex rules with the read transforms), and
  - `export(encoder)` for writing ({dialect name: array}),
so reading and writing a format can never disagree. `{i}` in a template stands for the layer index.

Dialects (see `tables.py`): Google TF1 (`bert/encoder/layer_0/attention/self/query/kernel`), Hugging Face
(`encoder.layer.0.attention.self.query.weight`, PyTorch [out, in]), Model Garden / TF Hub
(`transformer/layer_0/self_attention/query/kernel`, [H, heads, H/heads]) and keras-hub `BertBackbone`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from tfx_transfer.checkpoints.assignment_map import AssignmentMap, Rule
from tfx_transfer.checkpoints.transforms import Transform

WriteFn = Callable[[np.ndarray, object], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TensorName:
    """One encoder tensor in one dialect.

    Attributes:
        ours: our variable path template, e.g. "transformer_layer_{i}/self_attention/query/kernel".
        theirs: the dialect's name template.
        read: transforms applied when loading theirs -> ours (see `transforms.py`).
        write: function (array, BertConfig) -> array applied when exporting ours -> theirs.
        head: a task-head tensor (see `Rule.head`): discarded, not an error, when the model has no such head or one
            of another shape.
    """

    ours: str
    theirs: str
    read: Tuple[Transform, ...] = ()
    write: Optional[WriteFn] = None
    head: bool = False


def _regex(template: str) -> str:
    return re.escape(template).replace(re.escape("{i}"), r"(\d+)")


def _expand(template: str) -> str:
    return template.replace("{i}", r"\1")


class NameTable:
    """Rows of `TensorName` plus what else a dialect's checkpoints hold.

    Args:
        name: dialect name (used in reports).
        rows: the encoder's tensors.
        ignore: regexes of non-weights (optimizer slots, counters, buffers): skipped silently when reading.
        discard: regexes of recognised tensors an encoder does not use (pretraining/task heads).
        rename: (regex, replacement) pairs normalising name variants before matching (e.g. optional prefixes).
        optional: regexes of our variable paths this dialect's checkpoints may lack (see `AssignmentMap`).
    """

    def __init__(self, name: str, rows: Sequence[TensorName], ignore: Sequence[str] = (),
                 discard: Sequence[str] = (), rename: Sequence[Tuple[str, str]] = (), optional: Sequence[str] = ()):
        self.name = name
        self.rows = list(rows)
        self.ignore = list(ignore)
        self.discard = list(discard)
        self.rename = list(rename)
        self.optional = list(optional)
        self._ours = [(re.compile(_regex(row.ours)), row) for row in self.rows]

    def assignment_map(self) -> AssignmentMap:
        """The built-in map for reading this dialect into `BertEncoder`."""
        rules = [Rule(_regex(row.theirs), _expand(row.ours), row.read, row.head) for row in self.rows]
        return AssignmentMap(rules, ignore=self.ignore, discard=self.discard, rename=self.rename, name=self.name,
                             optional=self.optional)

    def extended(self, rows: Sequence[TensorName], name: Optional[str] = None) -> "NameTable":
        """This table with more rows (e.g. the head of one producer architecture), tried before its own."""
        return NameTable(name or self.name, list(rows) + self.rows, self.ignore, self.discard, self.rename,
                         self.optional)

    def their_name(self, path: str) -> Optional[Tuple[str, TensorName]]:
        """Our variable path -> (dialect name, row), or None when no row covers it."""
        for pattern, row in self._ours:
            match = pattern.fullmatch(path)
            if match:
                return (row.theirs.replace("{i}", match.group(1)) if "{i}" in row.ours else row.theirs), row
        return None

    def export(self, variables: Dict[str, np.ndarray], config) -> Dict[str, np.ndarray]:
        """Our {path: array} -> this dialect's {name: array}.

        Raises:
            ValueError: a variable has no row in the table (e.g. an adapter this format cannot hold),
                naming it.
        """
        out = {}
        unknown = []
        for path, array in variables.items():
            found = self.their_name(path)
            if found is None:
                unknown.append(path)
                continue
            name, row = found
            array = np.asarray(array)
            out[name] = np.ascontiguousarray(row.write(array, config) if row.write else array)
        if unknown:
            raise ValueError(
                f"The {self.name} format has no name for these variables: {', '.join(unknown[:8])}"
                f"{' ...' if len(unknown) > 8 else ''}. Export the base encoder, or save task-specific weights "
                "with the Keras format."
            )
        return out

    def expected_names(self, num_layers: int) -> set:
        """Every dialect name an encoder with `num_layers` layers exports (for tests and checks)."""
        names = set()
        for row in self.rows:
            if "{i}" in row.theirs:
                names.update(row.theirs.replace("{i}", str(i)) for i in range(num_layers))
            else:
                names.add(row.theirs)
        return names
