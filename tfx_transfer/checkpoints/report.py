"""What a checkpoint load did: loaded, discarded (unused in the checkpoint), newly initialised (missing)."""

from __future__ import annotations

import dataclasses
import re
from typing import List, Tuple


def natural_key(name: str):
    """Sort key putting layer_2 before layer_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclasses.dataclass(frozen=True)
class LoadedTensor:
    source: str
    target: str
    shape: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class UnusedTensor:
    """A checkpoint tensor not loaded. `reason`: 'discarded' (recognised, e.g. a pretraining head, or a task head the
    model does not have or has in another shape: `note` says which), 'unmatched' (no rule), or 'not in model' (a
    rule gave a path the model does not have)."""

    name: str
    shape: Tuple[int, ...]
    reason: str
    target: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class MissingVariable:
    """A model variable no checkpoint tensor initialised (it keeps its fresh initialisation)."""

    name: str
    shape: Tuple[int, ...]


@dataclasses.dataclass
class LoadReport:
    """Result of `load_checkpoint`; `str(report)` prints the seeds' hands-on style summary."""

    path: str
    format: str
    loaded: List[LoadedTensor] = dataclasses.field(default_factory=list)
    unused_in_checkpoint: List[UnusedTensor] = dataclasses.field(default_factory=list)
    missing_in_checkpoint: List[MissingVariable] = dataclasses.field(default_factory=list)
    ignored: List[str] = dataclasses.field(default_factory=list)

    @property
    def discarded(self) -> List[UnusedTensor]:
        """Alias of `unused_in_checkpoint` in the words of the seeds' hands-on."""
        return self.unused_in_checkpoint

    @property
    def newly_initialized(self) -> List[MissingVariable]:
        return self.missing_in_checkpoint

    @property
    def num_loaded_parameters(self) -> int:
        total = 0
        for item in self.loaded:
            count = 1
            for dim in item.shape:
                count *= dim
            total += count
        return total

    def summary(self, full: bool = False) -> str:
        """The seeds' hands-on print-out. Long lists fold per-layer names (`layer_*`, with a count) unless full."""
        unused = [(f"{u.name}", f"{list(u.shape)} [{u.reason}{' -> ' + u.target if u.target else ''}"
                                f"{': ' + u.note if u.note else ''}]") for u in self.unused_in_checkpoint]
        missing = [(m.name, str(list(m.shape))) for m in self.missing_in_checkpoint]
        lines = [
            f"Checkpoint {self.path} ({self.format}): loaded {len(self.loaded)} tensors "
            f"({self.num_loaded_parameters:,} parameters); {len(self.ignored)} ignored (optimizer slots, buffers).",
            f"Parameters discarded from the pretrained model ({len(unused)}): {_listing(unused, full)}",
            f"Parameters added in the adaptation model, newly initialized ({len(missing)}): {_listing(missing, full)}",
        ]
        return "\n".join(lines)

    __str__ = summary


def _listing(items, full, fold_above=12):
    """'name [shape], ...'; above `fold_above` items, names differing only in layer numbers are folded."""
    if not items:
        return "none"
    if full or len(items) <= fold_above:
        return ", ".join(f"{name} {detail}" for name, detail in items)
    folded = {}
    for name, detail in items:
        key = (re.sub(r"(layer[._]?)\d+", r"\1*", name), detail)
        folded[key] = folded.get(key, 0) + 1
    return ", ".join(f"{name} {detail}{f' x{count}' if count > 1 else ''}" for (name, detail), count in folded.items())


class CheckpointMismatchError(ValueError):
    """Strict loading found unexpected unused or missing tensors; `.report` holds the full LoadReport."""

    def __init__(self, message: str, report: LoadReport):
        super().__init__(message)
        self.report = report
