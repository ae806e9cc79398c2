"""A PNG next to each bench's Markdown table, drawn from its results JSON (`write_results` calls `render`):

    encoder_inference.png   examples/s per configuration, ours against keras-hub (same weights, same run)
    sst2_peers.png          SST-2 training speed and dev accuracy against keras-hub
    sst2_adaptation.png     dev accuracy and training speed per adaptation scheme (trainable fraction in the label)
    adaptation_schemes.png  dev accuracy per scheme and task: every seed, with the mean and standard deviation
    squad.png               SQuAD v1.1 EM and F1 per setup on the first 1,000 questions, with the reference's
    serving_latency.png     p50 / p99 latency of the Keras model and the exported SavedModel
    distribution.png        training examples/s per distribution setup
    glue_tasks.png          the official metric per GLUE task
    probing.png             dev accuracy of a linear probe on each layer of the frozen MiniLM, per task

Run alone to redraw every figure from the committed results: python bench/plots.py
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402


OURS, PEER, OTHER = "#1f77b4", "#ff7f0e", "#7f7f7f"


def _colour(name: str) -> str:
    lowered = name.lower()
    if "keras-hub" in lowered or "hugging face" in lowered or "torch" in lowered or "reference" in lowered \
            or lowered.startswith("hf "):
        return PEER
    return OURS


def _barh(ax, labels, values, colours, unit):
    positions = range(len(labels))
    ax.barh(list(positions), values, color=colours)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    for y, v in zip(positions, values):
        ax.text(v, y, f" {v:.3g}", va="center", fontsize=7)


def _encoder_inference(data, fig):
    rows = data["results"]
    ax = fig.add_subplot(1, 1, 1)
    _barh(ax, [r["name"] for r in rows], [r["examples_per_s"] for r in rows], [_colour(r["name"]) for r in rows],
          "examples/s (higher is better)")
    fig.suptitle(f"Encoder inference: all-MiniLM-L6-v2 on SST-2 dev, batch {data['batch']}; keras-hub (orange), "
                 "tfx_transfer (blue)", fontsize=9)


def _sst2_peers(data, fig):
    names = list(data["results"])
    rows = [data["results"][n] for n in names]
    colours = [_colour(n) for n in names]
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _barh(left, names, [r["train_examples_per_s"] for r in rows], colours, "training examples/s")
    _barh(right, names, [100 * r["dev_accuracy"] for r in rows], colours, "dev accuracy (%)")
    right.set_xlim(min(100 * r["dev_accuracy"] for r in rows) - 3, 100)
    fig.suptitle("SST-2, one epoch, same session (orange: keras-hub)", fontsize=9)


def _sst2_adaptation(data, fig):
    rows = data["results"]
    labels = [f"{r['run']} ({100 * r['trainable_fraction']:.2g}% trained)" for r in rows]
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _barh(left, labels, [100 * r["dev_accuracy"] for r in rows], OURS, "dev accuracy (%)")
    _barh(right, labels, [r["train_examples_per_s"] for r in rows], OURS, "training examples/s")
    right.set_yticks([])
    fig.suptitle("SST-2 adaptation schemes on all-MiniLM-L6-v2", fontsize=9)


def _adaptation_schemes(data, fig):
    tasks = sorted({key.split("/")[0] for key in data["summary"]})
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), i + 1)
        entries = [(key.split("/", 1)[1], value) for key, value in data["summary"].items() if key.startswith(task)]
        for y, (scheme, value) in enumerate(entries):
            if "mean" not in value:  # the ensemble: one accuracy of the averaged seeds' probabilities
                ax.scatter([100 * value["accuracy"]], [y], marker="D", color=PEER, zorder=3)
                continue
            runs = [100 * r for r in value.get("runs", [value["mean"]])]
            ax.scatter(runs, [y] * len(runs), color=OTHER, s=12, zorder=3)
            ax.errorbar(100 * value["mean"], y, xerr=100 * value.get("std", 0.0), fmt="o", color=OURS, capsize=3)
        ax.set_yticks(range(len(entries)), [e[0] for e in entries], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("dev accuracy (%)")
        ax.set_title(task, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Adaptation schemes: every seed (grey), mean and standard deviation (blue), ensemble of the seeds "
                 "(orange)", fontsize=9)


def _squad(data, fig):
    """EM / F1 on the first 1,000 dev questions, the subset the reference recipe (Hugging Face + PyTorch) was scored
    on, so the bars and the reference are comparable."""
    rows = list(data["results"])
    reference = data.get("reference") or {}
    if "f1_first_1000" in reference:
        rows.append({"setup": "reference (HF + PyTorch)", "em_first_1000": reference["em_first_1000"],
                     "f1_first_1000": reference["f1_first_1000"]})
    ax = fig.add_subplot(1, 1, 1)
    width = 0.38
    x = range(len(rows))
    colours = [_colour(r["setup"]) for r in rows]
    ax.bar([i - width / 2 for i in x], [r["em_first_1000"] for r in rows], width, color=colours, label="EM")
    ax.bar([i + width / 2 for i in x], [r["f1_first_1000"] for r in rows], width, color=colours, alpha=0.5,
           label="F1")
    for i, r in zip(x, rows):
        ax.text(i + width / 2, r["f1_first_1000"], f"{r['f1_first_1000']:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), [r["setup"] for r in rows], fontsize=8)
    ax.set_ylabel("score on the first 1,000 dev questions (%)")
    ax.legend(fontsize=8)
    ax.set_title("SQuAD v1.1, all-MiniLM-L6-v2: EM (solid) and F1 (light)", fontsize=9)


def _serving_latency(data, fig):
    names = list(data["results"])
    ax = fig.add_subplot(1, 1, 1)
    width = 0.38
    x = range(len(names))
    ax.bar([i - width / 2 for i in x], [data["results"][n]["p50_ms"] for n in names], width, label="p50",
           color=OURS)
    ax.bar([i + width / 2 for i in x], [data["results"][n]["p99_ms"] for n in names], width, label="p99",
           color="#aec7e8")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("latency of one request (ms, lower is better)")
    ax.legend(fontsize=8)
    ax.set_title("Serving latency, one sentence per request", fontsize=9)


def _distribution(data, fig):
    rows = data["results"]
    ax = fig.add_subplot(1, 1, 1)
    _barh(ax, [r["setup"] for r in rows], [r["train_examples_per_s"] for r in rows], OURS, "training examples/s")
    ax.set_title("Distribution strategies on this machine", fontsize=9)


def _glue_tasks(data, fig):
    rows = data["results"]
    ax = fig.add_subplot(1, 1, 1)
    labels, values = [], []
    for r in rows:
        metric, value = next(iter(r.get("metrics", {}).items()), (None, None))
        if metric is not None:
            labels.append(f"{r.get('task', '?')} ({metric})")
            values.append(100 * value if abs(value) <= 1 else value)
    _barh(ax, labels, values, OURS, "official metric (x100)")
    ax.set_title("GLUE tasks, official metric", fontsize=9)


def _peers_torch(data, fig):
    rows = data["sst2"]
    names = list(rows)
    colours = [_colour(n) for n in names]
    panels = [("process_wall_s", "whole process, s (lower is better)"),
              ("train_examples_per_s", "train examples/s"),
              ("inference_examples_per_s", "dev prediction, examples/s (raw text)")]
    if not rows:
        panels = []
    for i, (key, unit) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels) + 1, i + 1)
        _barh(ax, names if i == 0 else [""] * len(names), [rows[n][key] or 0 for n in names], colours, unit)
    encoder = data["encoder"]
    ax = fig.add_subplot(1, len(panels) + 1, len(panels) + 1)
    labels = sorted(encoder)
    _barh(ax, labels, [encoder[k] for k in labels], [_colour(k) for k in labels], "encoder forward, examples/s")
    fig.suptitle("SST-2-8k and the encoder at equal shapes against Hugging Face + PyTorch, same run "
                 "(orange: HF / torch)", fontsize=9)


def _probing(data, fig):
    ax = fig.add_subplot(1, 1, 1)
    for task, colour in zip(data["tasks"], (OURS, PEER, OTHER)):
        layers = task["layers"]
        ax.plot([x["layer"] for x in layers], [100 * x["accuracy"] for x in layers], marker="o", color=colour,
                label=task["title"])
        ax.set_xticks([x["layer"] for x in layers], ["emb" if x["layer"] == 0 else str(x["layer"]) for x in layers])
    ax.set_xlabel("layer (emb = embeddings)")
    ax.set_ylabel("dev accuracy %")
    ax.set_title("linear probe per layer, frozen MiniLM", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


FIGURES = {"peers_torch": (_peers_torch, (15, 3.2)), "encoder_inference": (_encoder_inference, (9, 4.5)), "sst2_peers": (_sst2_peers, (10, 2.8)),
           "sst2_adaptation": (_sst2_adaptation, (10, 3)), "adaptation_schemes": (_adaptation_schemes, (11, 4)),
           "squad": (_squad, (6, 4)), "serving_latency": (_serving_latency, (5, 3.5)),
           "distribution": (_distribution, (7, 2.5)), "glue_tasks": (_glue_tasks, (7, 3.5)),
           "probing": (_probing, (6, 3.5))}


def render(name: str, results):
    """`results`/<name>.png from <name>.json (atomic); returns its path, or None for a bench without a figure."""
    if name not in FIGURES:
        return None
    draw, size = FIGURES[name]
    data = json.loads((results / f"{name}.json").read_text(encoding="utf-8"))
    fig = plt.figure(figsize=size)
    try:
        draw(data, fig)
        fig.text(0.99, 0.01, f"{data.get('date', '')} · {data.get('cpus', '?')} CPUs", ha="right", fontsize=6,
                 color=OTHER)
        fig.tight_layout()
        path = results / f"{name}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
    return path


if __name__ == "__main__":
    from common import RESULTS

    for figure in FIGURES:
        if (RESULTS / f"{figure}.json").is_file():
            print(f"wrote {render(figure, RESULTS)}")
