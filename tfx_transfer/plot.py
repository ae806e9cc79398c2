"""A run's TensorBoard scalars as one figure: training loss, learning rate, and the evaluations during training.

    python -m tfx_transfer.plot <output_dir> [--out=<png>]      # default <output_dir>/training.png
    run_classifier.py / run_squad.py --plot_training             # the same, at the end of the run

Reads `<output_dir>/logs/events.*` (written by the training loop: `loss` and `learning_rate` every 10 steps, and
`eval/<metric>` at each evaluation during training). A resumed run writes some steps twice; the last value wins.
Also the per-layer figure of --probe_layers (`plot_probes`).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Dict, List, Tuple

import tensorflow as tf

Series = Dict[str, List[Tuple[int, float]]]


def read_scalars(log_dir: str) -> Series:
    """{tag: [(step, value), ...] sorted by step} from the event files of `log_dir`."""
    by_step: Dict[str, Dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = value.simple_value if value.HasField("simple_value") else \
                    float(tf.make_ndarray(value.tensor))
                by_step.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(values.items()) for tag, values in by_step.items()}


def plot_training(output_dir: str, path: str = None) -> str:
    """Writes the figure of `output_dir`'s run (atomically) and returns its path.

    Raises:
        FileNotFoundError: the run has no TensorBoard scalars (no `--do_train`, or another directory).
    """
    plt = _pyplot()
    series = read_scalars(os.path.join(output_dir, "logs"))
    if not series:
        raise FileNotFoundError(f"{os.path.join(output_dir, 'logs')}: no TensorBoard scalars (was the run trained "
                                "with --do_train?).")
    evaluations = sorted(tag for tag in series if tag.startswith("eval/"))
    panels = [tag for tag in ("loss", "learning_rate") if tag in series] + (["eval"] if evaluations else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        tags = evaluations if panel == "eval" else [panel]
        for tag in tags:
            steps, values = zip(*series[tag])
            ax.plot(steps, values, marker="o" if panel == "eval" else None, markersize=3,
                    label=tag.removeprefix("eval/"))
        ax.set_xlabel("step")
        ax.set_title({"loss": "training loss", "learning_rate": "learning rate",
                      "eval": "evaluation during training"}[panel], fontsize=9)
        ax.grid(alpha=0.3)
        if panel == "eval":
            ax.legend(fontsize=7)
    fig.suptitle(os.path.abspath(output_dir), fontsize=8)
    return _save(fig, path or os.path.join(output_dir, "training.png"))


def plot_probes(rows: List[dict], metrics: List[str], path: str) -> str:
    """Writes (atomically) the dev `metrics` of each layer's probe against the layer number and returns `path`.
    `rows`: one per layer, {"layer": n, "name": ..., metric: value} (`jobs.probing`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    layers = [r["layer"] for r in rows]
    for metric in metrics:
        ax.plot(layers, [r[metric] for r in rows], marker="o", markersize=4, label=metric.removeprefix("eval_"))
    ax.set_xticks(layers, [r["name"].replace("layer_", "") if r["layer"] else "emb" for r in rows])
    ax.set_xlabel("layer (emb = embeddings)")
    ax.set_title("linear probe per layer, dev set", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a run's --output_dir")
    parser.add_argument("--out", default=None, help="PNG to write (default <output_dir>/training.png)")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {plot_training(args.output_dir, args.out)}")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
