"""--probe_layers (run_ner.py, run_classifier.py): one linear probe per encoder layer on frozen features, trained
together in one pass over the data, scored per layer on the dev set (Tenney et al. 2019; `models.probes`).

Outputs in --output_dir:
  probe_results.tsv   layer, name (embeddings, layer_1, ...), then each dev metric of that layer's probe
  probe_results.png   the dev metrics against the layer
  eval_results.txt    `eval_<metric>_layer_<n> = value` lines, best_layer (by the job's first metric), global_step
  checkpoints/, logs/ resumable training state and TensorBoard scalars, as for any run
A probe set is a measurement, not a model to deploy: no final/ and no export.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List

import numpy as np
from absl import logging

from tfx_transfer.jobs import trainer
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.model_setup import build_encoder, prepare_model
from tfx_transfer.jobs.outputs import output_path, write_text
from tfx_transfer.jobs.training import compile_and_train
from tfx_transfer.models.probes import LayerProbes, parse_probe_layers
from tfx_transfer.plot import plot_probes


def check_probing(o, source):
    """The checks of --probe_layers, before any data is encoded or model built. Returns the probed layer numbers
    (None without --probe_layers)."""
    if not o.probe_layers:
        return None
    if o.model.adaptation != "feature_extraction":
        raise FlagError(f"--probe_layers probes frozen features: add --adaptation=feature_extraction (not "
                        f"{o.model.adaptation}).")
    if not (o.do_train and o.do_eval):
        raise FlagError("--probe_layers trains the probes and scores them on the dev set: add --do_train and "
                        "--do_eval.")
    if o.do_predict or o.do_export or o.output.export_dir:
        raise FlagError("--probe_layers writes per-layer dev metrics, not a model to predict with or export: drop "
                        "--do_predict / --do_export / --export_dir.")
    if o.training.evaluates_during_training:
        raise FlagError("--probe_layers scores every layer once, after training: drop --eval_every_steps / "
                        "--eval_every_epoch.")
    if getattr(o, "features", "pooled") != "pooled" or getattr(o, "teacher_probabilities", None) or \
            getattr(o, "auxiliary_tasks", None) or getattr(o, "student_layers", None) is not None:
        raise FlagError("--probe_layers trains its own linear probes: it does not combine with --features, "
                        "--teacher_probabilities, --auxiliary_tasks or --student_layers.")
    layers = source.config.num_hidden_layers if source.config else None
    try:
        return parse_probe_layers(o.probe_layers, range(layers + 1) if layers else range(1000))
    except ValueError as error:
        raise FlagError(str(error)) from None


def layer_name(number: int) -> str:
    return "embeddings" if number == 0 else f"layer_{number}"


def run_probes(o, strategy, source, layers: List[int], num_labels: int, per_token: bool, train_split, dev_split,
               score: Callable[[np.ndarray], Dict[str, float]], unit: str) -> List[dict]:
    """Trains `LayerProbes` on `train_split` (an `EncodedSplit`; labels [N, W] per token or [N]) and scores each probe
    on `dev_split` with `score` (one probe's dev logits, [N, W, C] or [N, C] -> {eval_<metric>: value}); writes
    the files of the module docstring. Returns one row per layer: {"layer", "name", **metrics}.

    Global-norm clipping is off: it would couple the probes (one norm over all of them), which otherwise train as
    separate models would."""
    with strategy.scope():
        model = LayerProbes(build_encoder(source, o.model, o.distribution, needs_layers=True), num_labels, per_token,
                            layers)
        prepare_model(model, source, o.model, will_train=True, task_name="probing")
    if o.training.clip_norm:
        logging.info("--probe_layers: global-norm clipping (--clip_norm=%s) is off, so that each probe trains as "
                     "if alone.", o.training.clip_norm)
    training = dataclasses.replace(o.training, clip_norm=0.0)
    out = o.output.output_dir
    result = compile_and_train(model, train_split, unit, training, o.max_seq_length, out)
    logits = trainer.predict(model, dev_split, batch_size=o.eval_batch_size, max_seq_length=o.max_seq_length,
                             jit_compile=o.training.jit_compile, padding=o.training.batch_padding,
                             per_token=per_token)
    rows = [{"layer": number, "name": layer_name(number), **score(logits[..., p, :])}
            for p, number in enumerate(model.layers_probed)]
    write_probe_results(out, rows, result["steps"])
    return rows


def write_probe_results(out: str, rows: List[dict], global_step: int):
    """probe_results.tsv, probe_results.png and eval_results.txt (see the module docstring) from `rows`."""
    metrics = [key for key in rows[0] if key not in ("layer", "name")]
    lines = ["\t".join(["layer", "name", *metrics])]
    lines += ["\t".join([str(r["layer"]), r["name"], *(f"{r[m]:.6f}" for m in metrics)]) for r in rows]
    write_text(output_path(out, "probe_results.tsv"), "\n".join(lines) + "\n")
    lower_is_better = metrics[0].endswith("_loss")
    best = (min if lower_is_better else max)(rows, key=lambda r: r[metrics[0]])
    results = [f"{m}_layer_{r['layer']} = {r[m]}" for r in rows for m in metrics]
    results += [f"best_layer = {best['layer']}", f"global_step = {global_step}"]
    write_text(output_path(out, "eval_results.txt"), "\n".join(results) + "\n")
    plot = plot_probes(rows, [m for m in metrics if not m.endswith("_loss")] or metrics,
                       output_path(out, "probe_results.png"))
    logging.info("***** Probe results (dev) *****\n  %s\n  best: %s (%s = %.4f); plot: %s", "\n  ".join(lines),
                 best["name"], metrics[0], best[metrics[0]], plot)
