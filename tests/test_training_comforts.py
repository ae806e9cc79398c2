"""What users expect around a run: evaluation during training with the best checkpoint as final/ (Model Garden's
best-checkpoint exporter, Hugging Face's load_best_model_at_end), early stopping, resuming in the middle of both,
the model card of final/ and of exports, a lock on --output_dir, and a console without TensorFlow's native
start-up lines."""

import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfx_transfer import runtime_defaults
from tfx_transfer.jobs import classifier
from tfx_transfer.native_logs import is_startup_noise
from tfx_transfer.plot import main as plot_main
from tfx_transfer.plot import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
if "task_name" not in FLAGS:
    classifier.define_flags()

from conftest import WORDS  # noqa: E402

TINY_RUN = ["--max_seq_length=32", "--train_batch_size=4", "--eval_batch_size=4", "--learning_rate=1e-3",
            "--save_checkpoints_steps=3", "--seed=3"]


def _sst2(root, n_train=16, n_dev=12, seed=0):
    """An SST-2 directory of word-salad sentences; label 1 when the sentence has more words from the first half of
    the vocabulary (learnable, so the dev metrics move during training)."""
    rng = np.random.default_rng(seed)
    d = root / "SST-2"
    d.mkdir(exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = []
        for _ in range(n):
            words = rng.choice(WORDS, 6)
            label = int(sum(WORDS.index(w) < len(WORDS) // 2 for w in words) > 3)
            rows.append(f"{' '.join(words)}\t{label}")
        (d / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return d


def run_job(argv):
    FLAGS.unparse_flags()
    FLAGS(["run_classifier.py"] + argv)
    return classifier.main(["run_classifier.py"])


def _results(out):
    return dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())


def _history(out):
    """The evaluation history the newest training checkpoint carries."""
    checkpoints = sorted((out / "checkpoints").glob("ckpt-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((checkpoints[-1] / "state.json").read_text())["evaluation"]


def test_the_best_evaluation_becomes_final(tiny_model, tmp_path):
    data, out = _sst2(tmp_path), tmp_path / "out"
    assert run_job(["--task_name=SST-2", f"--data_dir={data}", f"--pretrained={tiny_model}", f"--output_dir={out}",
                    "--do_train", "--do_eval", "--num_train_epochs=3", "--eval_every_steps=2",
                    "--keep_best=eval_loss", "--plot_training"] + TINY_RUN) == 0
    best = json.loads((out / "final" / "task.json").read_text())["best_model"]
    history = _history(out)["history"]
    assert [h["step"] for h in history] == [2, 4, 6, 8, 10, 12] and best["evaluations"] == 6
    losses = {h["step"]: h["eval_loss"] for h in history}
    assert best["step"] == min(losses, key=losses.get) and best["value"] == min(losses.values())
    assert len(set(losses.values())) > 1  # the evaluations differed, so the choice was a real one
    # final/ and the --do_eval after training are the best model, not the last one
    assert float(_results(out)["eval_loss"]) == pytest.approx(best["value"], abs=1e-6)
    card = json.loads((out / "final" / "model_card.json").read_text())
    assert card["best_model"] == best and card["metrics"]["eval_loss"] == pytest.approx(best["value"], abs=1e-6)
    assert "final/ is the best of 6 evaluations during training: eval_loss = " in \
        (out / "final" / "README.md").read_text()
    scalars = read_scalars(str(out / "logs"))
    assert {"eval/eval_loss", "eval/eval_accuracy", "loss", "learning_rate"} <= set(scalars)
    assert scalars["eval/eval_loss"] == [(h["step"], pytest.approx(h["eval_loss"])) for h in history]
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # --plot_training


def test_plot_refuses_a_directory_without_a_training_run(tmp_path, capsys):
    assert plot_main([str(tmp_path)]) == 2
    assert "no TensorBoard scalars" in capsys.readouterr().err


def test_early_stopping_stops_and_a_rerun_does_not_train_on(tiny_model, tmp_path, absl_log):
    data, out = _sst2(tmp_path), tmp_path / "out"
    # A learning rate too small to flip any prediction: dev accuracy never improves after the first evaluation.
    command = ["--task_name=SST-2", f"--data_dir={data}", f"--pretrained={tiny_model}", f"--output_dir={out}",
               "--do_train", "--do_eval", "--num_train_epochs=4", "--eval_every_steps=1",
               "--early_stopping_patience=2", "--keep_best=eval_accuracy"] + TINY_RUN + ["--learning_rate=1e-9"]
    assert run_job(command) == 0
    best = json.loads((out / "final" / "task.json").read_text())["best_model"]
    assert best == {"metric": "eval_accuracy", "value": best["value"], "step": 1, "evaluations": 3,
                    "stopped_early": True}
    assert _results(out)["global_step"] == "3"  # of 16
    assert run_job(command + ["--verbosity=0"]) == 0
    assert "Training stopped early at step 3" in absl_log.text
    assert _results(out)["global_step"] == "3"
    assert json.loads((out / "final" / "task.json").read_text())["best_model"] == best


def _final_weights(out):
    import keras

    return [np.asarray(w) for w in keras.models.load_model(str(out / "final" / "model.keras")).weights]


def _command(data, model, out):
    return [sys.executable, os.path.join(REPO, "run_classifier.py"), "--task_name=SST-2", f"--data_dir={data}",
            f"--pretrained={model}", f"--output_dir={out}", "--do_train", "--do_eval", "--num_train_epochs=2",
            "--eval_every_steps=4", "--keep_best=eval_loss", "--early_stopping_patience=6", "--max_seq_length=32",
            "--train_batch_size=4", "--eval_batch_size=4", "--learning_rate=1e-3", "--save_checkpoints_steps=2",
            "--seed=5"]


def test_killed_in_the_middle_of_best_model_tracking_resumes_to_the_same_choice(tiny_model, tmp_path):
    """kill -9 after the first checkpoint; the same command resumes and ends with the uninterrupted run's best step,
    value, history and final weights. The resumed run's console (the script's defaults: no TF_CPP_MIN_LOG_LEVEL or
    TFX_TRANSFER_QUIET_START in the environment) has none of TensorFlow's native start-up lines, and our own lines."""
    data = _sst2(tmp_path, n_train=64, n_dev=12, seed=1)
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFX_TRANSFER_QUIET_START")}
    subprocess.run(_command(data, tiny_model, reference), check=True, env=env, capture_output=True, cwd=REPO)
    process = subprocess.Popen(_command(data, tiny_model, interrupted), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and not list((interrupted / "checkpoints").glob("ckpt-*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (interrupted / "final").exists(), "the run finished before it could be killed"
    assert (interrupted / ".tfx_transfer.lock").exists()  # left by the killed run: stale, taken over below
    resumed = subprocess.run(_command(data, tiny_model, interrupted), env=env, capture_output=True, text=True,
                             cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "taking over the lock of a run that is no longer alive" in resumed.stderr
    first = json.loads((reference / "final" / "task.json").read_text())["best_model"]
    second = json.loads((interrupted / "final" / "task.json").read_text())["best_model"]
    assert first == second
    assert _history(reference)["history"] == _history(interrupted)["history"]
    for a, b in zip(_final_weights(reference), _final_weights(interrupted)):
        np.testing.assert_array_equal(a, b)
    _assert_clean_console(resumed.stdout + resumed.stderr, env)


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_model_card_of_final_and_of_the_export(tiny_model, tmp_path):
    data, out, export = _sst2(tmp_path), tmp_path / "out", tmp_path / "export"
    argv = ["--task_name=SST-2", f"--data_dir={data}", f"--pretrained={tiny_model}", f"--output_dir={out}",
            "--do_train", "--do_eval", "--num_train_epochs=1", "--adaptation=adapters", "--adapter_size=4",
            f"--export_dir={export}"] + TINY_RUN
    assert run_job(argv) == 0
    card = json.loads((out / "final" / "model_card.json").read_text())
    weights = os.path.join(tiny_model, "model.safetensors")
    assert card["base_model"]["name"] == f"--pretrained={tiny_model}"
    assert card["base_model"]["path"] == os.path.abspath(weights) and card["base_model"]["sha256"] == _sha256(weights)
    assert [(d["role"], d["rows"], d["sha256"]) for d in card["data"]] == [
        ("train", 16, _sha256(data / "train.tsv")), ("dev", 12, _sha256(data / "dev.tsv"))]
    assert card["command"][0] == "run_classifier.py" and "--adaptation=adapters" in card["command"]
    assert card["options"]["model"]["adaptation"] == "adapters" and card["options"]["training"]["learning_rate"] == 1e-3
    assert card["options"]["training"]["warmup_proportion"] == 0.1  # defaults are recorded too
    p = card["parameters"]
    assert 0 < p["trainable"] < p["total"] and p["trainable_fraction"] == pytest.approx(p["trainable"] / p["total"])
    assert "loaded" in card["load_report"].lower()
    assert card["training"]["steps"] == 4 and card["best_model"] is None
    assert set(card["metrics"]) >= {"eval_accuracy", "eval_loss", "global_step"}
    assert card["metrics"]["eval_accuracy"] == float(_results(out)["eval_accuracy"])
    assert card["libraries"]["tensorflow"] == tf.__version__ and card["task"]["labels"] == ["0", "1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", card["date"])
    readme = (out / "final" / "README.md").read_text()
    for text in ("# SST-2 - fine-tuned with tfx_transfer", "## Base model", card["base_model"]["sha256"], "## Data",
                 "## Results", "| eval_accuracy |", "## Load report", "## Environment", "--adaptation=adapters",
                 "final/ holds the weights at the end of training"):
        assert text in readme, text
    exported = json.loads((export / "1" / "model_card.json").read_text())
    assert exported["base_model"] == card["base_model"] and exported["metrics"] == card["metrics"]
    assert (export / "1" / "README.md").is_file() and (export / "1" / "saved_model.pb").is_file()


# ------------------------------------------------------------------ console
NATIVE_SAMPLES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796136848.591865   13722 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "I0000 00:00:1796136848.664229   13722 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "E0000 00:00:1796136854.115242   13722 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1733000000.000000    101 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
]
REAL_LINES = [
    "E0000 00:00:1796136854.115242   13722 op_kernel.cc:1830] OP_REQUIRES failed at strided_slice_op.cc:117",
    "W0000 00:00:1796136854.115242   13722 port.cc:99] something else the port reports",
    "I1201 14:00:00.000000 140000 classifier.py:120] Trained to step 4 (from the start); 12.0 examples/s.",
    "UserWarning: Gradients do not exist for variables",
]


def test_the_filter_knows_tensorflows_start_up_lines_and_nothing_else():
    assert all(is_startup_noise(line) for line in NATIVE_SAMPLES)
    assert not any(is_startup_noise(line) for line in REAL_LINES)


def _assert_clean_console(output, env):
    control = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                             env=env, capture_output=True, text=True, cwd=REPO)
    noise_here = [line.strip() for line in control.stderr.splitlines() if is_startup_noise(line)]  # this machine's
    lines = output.splitlines()
    assert not [line for line in lines if is_startup_noise(line) or line.strip() in noise_here]
    assert any("Resuming training from" in line for line in lines)  # our own log lines still show
    assert any("final/ is the best model of" in line for line in lines)


@pytest.mark.skipif(platform.machine().lower() not in runtime_defaults.X86_64,
                    reason="oneDNN is asked for on x86-64 only")
def test_importing_the_package_first_asks_for_onednn_and_respects_the_users_choice(monkeypatch):
    """runtime_defaults.py: TF_ENABLE_ONEDNN_OPTS=1 unless set (0 keeps Eigen) or TensorFlow came first. One fresh
    process proves TensorFlow's kernels follow; the choices themselves are checked here (TensorFlow reads the
    variable once, at its import)."""
    script = "import tfx_transfer\nfrom tensorflow.python.util import _pywrap_util_port\n" \
             "print(_pywrap_util_port.IsMklEnabled())"
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stdout.split()[-1] == "True"

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    runtime_defaults.apply()  # TensorFlow is imported in this process: its own choice stands
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    monkeypatch.delitem(sys.modules, "tensorflow")  # as if TensorFlow came after the package
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    runtime_defaults.apply()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"  # the user's choice
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    runtime_defaults.apply()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
