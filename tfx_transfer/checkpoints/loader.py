"""`load_checkpoint`: initialise a Keras model from a checkpoint through an assignment map, with a report."""

from __future__ import annotations

import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from tfx_transfer.checkpoints.assignment_map import AssignmentMap
from tfx_transfer.checkpoints.formats import open_checkpoint
from tfx_transfer.checkpoints.report import (CheckpointMismatchError, LoadedTensor, LoadReport, MissingVariable,
                                             UnusedTensor, natural_key)


def model_variables(model) -> Dict[str, object]:
    """The model's weights by variable path (e.g. `transformer_layer_0/self_attention/query/kernel`).

    Raises:
        ValueError: two weights share a path (give the layers distinct names).
    """
    variables = {}
    for variable in model.weights:
        path = variable.path
        if path in variables:
            if variables[path] is variable:  # a shared layer (e.g. PAL projections) seen from several blocks
                continue
            raise ValueError(f"Two model variables share the path {path!r}; give their layers distinct names.")
        variables[path] = variable
    return variables


def _matches_any(name, patterns):
    return any(re.fullmatch(p, name) for p in patterns)


def load_checkpoint(model, path, strict: bool = True, assignment_map: Optional[AssignmentMap] = None,
                    allow_missing: Sequence[str] = (), allow_unused: Sequence[str] = (),
                    heads: bool = True) -> LoadReport:
    """Loads checkpoint tensors into `model`'s variables and reports what happened.

    The format is detected from `path` (see `tfx_transfer.checkpoints.formats`). Names are resolved by
    `assignment_map` (tried first) and then the format's built-in map. Nothing is assigned unless every
    mapped tensor fits, so a failed load leaves the model untouched.

    Args:
        model: a built Keras model/layer (e.g. `BertEncoder`, or a task model containing one).
        path: checkpoint file or directory.
        strict: raise `CheckpointMismatchError` when a model variable gets no value (unless it matches
            `allow_missing`) or a checkpoint tensor is unused (unless discarded by the map or matching
            `allow_unused`). With `strict=False` the report lists them and loading proceeds.
        assignment_map: user rules; see `AssignmentMap`.
        allow_missing: regexes of model variable paths that may stay newly initialised (e.g. a task head).
        allow_unused: regexes of checkpoint names that may go unused.
        heads: load the checkpoint's task head (a fine-tuned classifier's, a QA model's) into the model's head of
            the same kind and shape. False discards it (a model whose head computes something else).

    Returns:
        LoadReport.

    Raises:
        ValueError: a shape mismatch (naming the checkpoint tensor, the variable and both shapes), two
            tensors mapped onto one variable, or an unknown format.
    """
    fmt, reader, builtin = open_checkpoint(path)
    return load_from_reader(model, reader, builtin, fmt, strict=strict, assignment_map=assignment_map,
                            allow_missing=allow_missing, allow_unused=allow_unused, heads=heads)


def load_from_reader(model, reader, builtin: AssignmentMap, fmt: str, strict: bool = True,
                     assignment_map: Optional[AssignmentMap] = None, allow_missing: Sequence[str] = (),
                     allow_unused: Sequence[str] = (), heads: bool = True) -> LoadReport:
    """`load_checkpoint` for an already opened reader (e.g. `ArrayReader` over another model's weights)."""
    path = reader.path
    mapping = assignment_map.then(builtin) if assignment_map is not None else builtin
    variables = model_variables(model)
    report = LoadReport(path=os.fspath(path), format=fmt)
    shapes = reader.shapes()
    assignments = {}  # target path -> (source, array)

    for name in sorted(shapes, key=natural_key):
        resolution = mapping.resolve(name)
        if resolution.kind == "ignore":
            report.ignored.append(name)
            continue
        if resolution.kind in ("discard", "unmatched"):
            reason = "discarded" if resolution.kind == "discard" else "unmatched"
            report.unused_in_checkpoint.append(UnusedTensor(name, shapes[name], reason))
            continue
        target = resolution.target
        if resolution.head and not heads:
            report.unused_in_checkpoint.append(UnusedTensor(name, shapes[name], "discarded", target,
                                                            "a task head; this model's head computes something else"))
            continue
        if target not in variables:
            reason = "discarded" if resolution.discardable or resolution.head else "not in model"
            note = "a task head this model does not have" if resolution.head else ""
            report.unused_in_checkpoint.append(UnusedTensor(name, shapes[name], reason, target, note))
            continue
        if target in assignments:
            raise ValueError(
                f"Checkpoint tensors {assignments[target][0]!r} and {name!r} both map to the model variable "
                f"{target!r}; fix the assignment map."
            )
        variable = variables[target]
        target_shape = tuple(variable.shape)
        array = reader.read(name)
        try:
            for transform in resolution.transforms:
                array = transform(array, target_shape)
        except ValueError as e:
            raise ValueError(f"Checkpoint tensor {name!r} -> model variable {target!r}: {e}.") from e
        if tuple(array.shape) != target_shape and resolution.head:
            report.unused_in_checkpoint.append(UnusedTensor(
                name, shapes[name], "discarded", target,
                f"a task head of shape {list(array.shape)}; the model's is {list(target_shape)} (another number of "
                "classes)"))
            continue
        if tuple(array.shape) != target_shape:
            transformed = ""
            if resolution.transforms:
                steps = ", ".join(map(repr, resolution.transforms))
                transformed = f" ({list(array.shape)} after {steps})"
            raise ValueError(
                f"Shape mismatch: checkpoint tensor {name!r} has shape {list(shapes[name])}{transformed} "
                f"but model variable {target!r} has shape {list(target_shape)}."
            )
        assignments[target] = (name, array)
        report.loaded.append(LoadedTensor(name, target, target_shape))

    for target in sorted(set(variables) - set(assignments), key=natural_key):
        report.missing_in_checkpoint.append(MissingVariable(target, tuple(variables[target].shape)))

    if strict:
        bad_unused = [u for u in report.unused_in_checkpoint
                      if u.reason != "discarded" and not _matches_any(u.name, allow_unused)]
        allowed = [*allow_missing, *mapping.optional_targets()]
        bad_missing = [m for m in report.missing_in_checkpoint if not _matches_any(m.name, allowed)]
        if bad_unused or bad_missing:
            problems = []
            if bad_missing:
                problems.append(f"{len(bad_missing)} model variable(s) not in the checkpoint: "
                                + ", ".join(m.name for m in bad_missing[:10]) + (" ..." if len(bad_missing) > 10 else ""))
            if bad_unused:
                problems.append(f"{len(bad_unused)} checkpoint tensor(s) unused: "
                                + ", ".join(f"{u.name} ({u.reason}{' -> ' + u.target if u.target else ''})"
                                            for u in bad_unused[:10]) + (" ..." if len(bad_unused) > 10 else ""))
            raise CheckpointMismatchError(
                f"Strict checkpoint load of {os.fspath(path)!r} failed: " + "; ".join(problems)
                + ". Pass strict=False to load what matches, allow_missing/allow_unused patterns, or an "
                "assignment_map.\n" + report.summary(), report)

    for target, (_, array) in assignments.items():
        variable = variables[target]
        variable.assign(np.asarray(array, dtype=variable.dtype))
    return report
