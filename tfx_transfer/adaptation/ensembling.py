"""Ensembling fine-tuned runs: Q(c | x) = average of the runs' class probabilities (the seeds' 4.3.C).

    python -m tfx_transfer.adaptation.ensembling --inputs=run1/eval_probabilities.tsv,run2/eval_probabilities.tsv \
        --output_file=ensemble.tsv --task_name=RTE --data_dir=glue_data/RTE

Inputs are the probability files run_classifier.py writes (`eval_probabilities.tsv` for the dev set,
`test_results.tsv` for the test set: one row per example, tab-separated class probabilities), or arrays from
Python. With --task_name/--data_dir the ensemble is scored on the dev set with the task's metrics.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np

from tfx_transfer.data.examples import read_rows
from tfx_transfer.data.glue import get_processor
from tfx_transfer.io_utils import write_text
from tfx_transfer.metrics.glue import compute


def average_probabilities(probabilities: Sequence[np.ndarray], weights: Optional[Sequence[float]] = None):
    """Weighted mean of [N, C] probability arrays (equal weights by default)."""
    arrays = [np.asarray(p, np.float64) for p in probabilities]
    if not arrays:
        raise ValueError("average_probabilities: no inputs.")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"average_probabilities: inputs of different shapes {sorted(shapes)}.")
    weights = np.ones(len(arrays)) if weights is None else np.asarray(weights, np.float64)
    if len(weights) != len(arrays) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"average_probabilities: need one non-negative weight per input, got {list(weights)}.")
    return (np.tensordot(weights / weights.sum(), np.stack(arrays), axes=1)).astype(np.float32)


def read_probabilities(path: str) -> np.ndarray:
    """A probability file (one row per example, tab-separated values) -> float32 [N, C]."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such probability file.")
    rows = []
    for row in read_rows(path, "\t"):  # the project's one reader of delimited text (line numbers, encodings)
        if row.fields and any(v.strip() for v in row.fields):
            try:
                rows.append([float(v) for v in row.fields])
            except ValueError as error:
                text = "\t".join(row.fields).strip()[:60]
                raise ValueError(f"{path}:{row.line}: not tab-separated numbers: {text!r}") from error
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"{path}: rows of different widths.")
    return np.asarray(rows, np.float32)


def write_probabilities(path: str, probabilities: np.ndarray):
    rows = ["\t".join(f"{p:.6f}" for p in np.atleast_1d(row)) for row in probabilities]
    write_text(path, "\n".join(rows) + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", required=True, help="comma-separated probability files")
    parser.add_argument("--weights", default=None, help="comma-separated weights (default: equal)")
    parser.add_argument("--output_file", required=True)
    parser.add_argument("--task_name", default=None, help="score on this GLUE task's dev set")
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args(argv)
    try:
        arrays = [read_probabilities(p) for p in args.inputs.split(",") if p]
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        ensemble = average_probabilities(arrays, weights)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}")
        return 2
    write_probabilities(args.output_file, ensemble)
    print(f"averaged {len(arrays)} runs -> {args.output_file}")
    if args.task_name:
        processor = get_processor(args.task_name)
        dev = processor.dev_examples(args.data_dir)
        index = {label: i for i, label in enumerate(processor.labels)}
        labels = np.asarray([index[e.label] for e in dev])
        if len(labels) != len(ensemble):
            print(f"error: {len(ensemble)} predictions for {len(labels)} dev examples")
            return 2
        for name, probs in [(f"run {i + 1}", a) for i, a in enumerate(arrays)] + [("ensemble", ensemble)]:
            scores = compute(processor.metrics, labels, probs.argmax(axis=1))
            print(f"  {name:10s} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
