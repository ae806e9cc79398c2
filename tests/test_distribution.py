"""tf.distribute from the scripts: MirroredStrategy over 2 logical CPU devices and MultiWorkerMirroredStrategy
with 2 worker processes on 127.0.0.1 reach the weights of a single-device run with the same global batch; only
the chief writes; a multi-worker job killed mid-run resumes from the chief's last checkpoint.

Every run is the real command line in its own process (a TensorFlow process can create one strategy, before it
touches a device). Dropout is 0 in these models: with dropout, replicas draw different masks than one device does,
so runs agree statistically, not bit for bit.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import WORDS
from tfx_transfer.jobs.distribution import free_local_ports
from tfx_transfer.jobs import classifier  # noqa: F401  (registers the task model's Keras classes for load_model)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
ENV.pop("TF_CONFIG", None)
TOLERANCE = 1e-5  # float32 sums in a different order (per-replica halves, then all-reduce)


@pytest.fixture(scope="module")
def no_dropout_model(tiny_model, tmp_path_factory):
    """The tiny model with dropout 0 (config edit only: same weights)."""
    import shutil

    target = tmp_path_factory.mktemp("nodrop") / "model"
    shutil.copytree(tiny_model, target)
    config = json.loads((target / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (target / "config.json").write_text(json.dumps(config))
    return str(target)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """SST-2 layout, 64 training rows: 8 global batches of 8 (even batches: every replica gets half)."""
    rng = np.random.default_rng(5)
    d = tmp_path_factory.mktemp("dist") / "SST-2"
    d.mkdir()
    rows = [" ".join(rng.choice(WORDS, rng.integers(3, 9))) + f"\t{i % 2}" for i in range(64)]
    for split in ("train", "dev"):
        (d / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(d)


def command(model, data, out, *extra):
    return [sys.executable, os.path.join(REPO, "run_classifier.py"), "--task_name=SST-2", f"--data_dir={data}",
            f"--pretrained={model}", f"--output_dir={out}", "--do_train", "--max_seq_length=32",
            "--train_batch_size=8", "--num_train_epochs=2", "--learning_rate=1e-3", "--seed=3",
            "--save_checkpoints_steps=4", *extra]


def fingerprint(stderr):
    found = re.findall(r"Weights at step (\d+): fingerprint (\w+)", stderr)
    assert found, stderr[-3000:]
    return found[-1]


def final_weights(out):
    import keras

    return [np.asarray(w) for w in keras.models.load_model(os.path.join(out, "final", "model.keras")).weights]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=TOLERANCE)


@pytest.fixture(scope="module")
def single_device(no_dropout_model, data_dir, tmp_path_factory):
    """Final weights of a default-strategy run, full fine-tuning and adapters."""
    runs = {}
    for adaptation in ("full", "adapters"):
        out = tmp_path_factory.mktemp(f"single_{adaptation}")
        extra = ["--adaptation=adapters", "--adapter_size=4"] if adaptation == "adapters" else []
        result = subprocess.run(command(no_dropout_model, data_dir, out, *extra), env=ENV, capture_output=True,
                                text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[adaptation] = final_weights(out)
    return runs


@pytest.mark.parametrize("adaptation", ["full", "adapters"])
def test_mirrored_over_two_cpu_devices_equals_one_device(adaptation, no_dropout_model, data_dir, single_device,
                                                         tmp_path):
    extra = ["--adaptation=adapters", "--adapter_size=4"] if adaptation == "adapters" else []
    result = subprocess.run(command(no_dropout_model, data_dir, tmp_path, "--distribution_strategy=mirrored",
                                    "--num_cpu_devices=2", *extra), env=ENV, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Distribution: --distribution_strategy=mirrored (MirroredStrategy) with 2 replica(s)." in result.stderr
    assert fingerprint(result.stderr)[0] == "16"
    assert_same_weights(final_weights(tmp_path), single_device[adaptation])


def _launch_workers(argv, ports):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(len(ports)):
        env = dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                          cwd=REPO))
    return processes


def _finish(processes, timeout=240):
    outputs = []
    deadline = time.time() + timeout
    try:
        for process in processes:
            _, err = process.communicate(timeout=max(1, deadline - time.time()))
            outputs.append((process.returncode, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def test_two_workers_train_like_one_device_and_only_the_chief_writes(no_dropout_model, data_dir, single_device,
                                                                     tmp_path):
    out = tmp_path / "out"
    argv = command(no_dropout_model, data_dir, out, "--distribution_strategy=multi_worker_mirrored", "--do_eval")
    results = _finish(_launch_workers(argv, free_local_ports(2)))
    for code, err in results:
        assert code == 0, err[-3000:]
    chief, worker = (fingerprint(err) for _, err in results)
    assert chief == worker and chief[0] == "16"  # both workers hold bit-identical weights after 16 steps
    assert "this worker is not the chief" in results[1][1] and "this worker is not the chief" not in results[0][1]
    assert sorted(os.listdir(out)) == ["checkpoints", "eval_probabilities.tsv", "eval_results.txt", "final", "logs"]
    assert_same_weights(final_weights(out), single_device["full"])


def test_killed_worker_job_resumes_from_the_last_checkpoint(no_dropout_model, data_dir, single_device, tmp_path):
    out = tmp_path / "out"
    argv = command(no_dropout_model, data_dir, out, "--distribution_strategy=multi_worker_mirrored")
    processes = _launch_workers(argv, free_local_ports(2))
    checkpoints = out / "checkpoints"
    deadline = time.time() + 180
    try:
        while time.time() < deadline and not (checkpoints.is_dir() and any(
                n.startswith("ckpt-") for n in os.listdir(checkpoints))):
            time.sleep(0.05)
        processes[1].send_signal(signal.SIGKILL)  # a worker dies; the chief then fails or hangs in a collective
        time.sleep(2)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    saved = sorted(int(n.split("-")[1]) for n in os.listdir(checkpoints) if n.startswith("ckpt-"))
    assert saved and saved[-1] < 16 and not (out / "final").exists(), saved

    results = _finish(_launch_workers(argv, free_local_ports(2)))  # the same job, restarted
    for code, err in results:
        assert code == 0, err[-3000:]
        assert f"Resuming training from {checkpoints / f'ckpt-{saved[-1]}'}: step {saved[-1]} of 16" in err
    assert results[0][1] and fingerprint(results[0][1]) == fingerprint(results[1][1])
    assert_same_weights(final_weights(out), single_device["full"])


def test_run_ner_mirrored_equals_one_device_with_uneven_token_counts(no_dropout_model, tmp_path):
    """Token classification averages its loss over the labelled tokens of the whole global batch; the two replicas'
    halves hold different numbers of them (sentences of 1 to 9 words), so a per-replica mean would weight them
    wrongly."""
    from tfx_transfer.jobs import ner  # noqa: F401  (registers BertTokenClassifier for load_model)

    rng = np.random.default_rng(7)
    lines = []
    for i in range(32):
        words = list(rng.choice(WORDS, 1 + (i * 5) % 9))
        lines += [f"{w} {'B-Q' if w in ('good', 'bad', 'great') else 'O'}" for w in words] + [""]
    data = tmp_path / "tags.txt"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    weights = {}
    for name, extra in (("one", []), ("mirrored", ["--distribution_strategy=mirrored", "--num_cpu_devices=2"])):
        out = tmp_path / name
        argv = [sys.executable, os.path.join(REPO, "run_ner.py"), f"--train_file={data}", f"--pretrained={no_dropout_model}",
                f"--output_dir={out}", "--do_train", "--max_seq_length=16", "--train_batch_size=8",
                "--num_train_epochs=2", "--learning_rate=1e-3", "--seed=3", "--label_column=-1", *extra]
        result = subprocess.run(argv, env=ENV, capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
        assert fingerprint(result.stderr)[0] == "8"
        weights[name] = final_weights(out)
    assert_same_weights(weights["mirrored"], weights["one"])


def test_two_workers_stream_a_corpus_like_one_device(no_dropout_model, tmp_path):
    """run_pretraining.py on a streamed corpus under MultiWorkerMirroredStrategy: each worker reads the stream and
    keeps its rows of every global batch (the DATA policy; data/streaming.py says why not whole files), with the
    masks of the global batch, so 2 workers end with the weights of one device (head warm-up included)."""
    from tfx_transfer.jobs import pretraining  # noqa: F401  (registers BertMaskedLM for load_model)

    rng = np.random.default_rng(9)
    lines = []
    for _ in range(40):
        lines += [" ".join(rng.choice(WORDS, rng.integers(3, 9))) for _ in range(rng.integers(1, 4))] + [""]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def argv(out):
        return [sys.executable, os.path.join(REPO, "run_pretraining.py"), f"--pretrained={no_dropout_model}",
                f"--output_dir={out}", "--do_train", f"--input_file={corpus}", "--streaming=on",
                "--shuffle_buffer=16", "--max_seq_length=24", "--train_batch_size=8", "--num_train_steps=6",
                "--learning_rate=1e-3", "--seed=3", "--save_checkpoints_steps=100"]

    one = subprocess.run(argv(tmp_path / "one"), env=ENV, capture_output=True, text=True, cwd=REPO)
    assert one.returncode == 0, one.stderr[-3000:]
    results = _finish(_launch_workers(argv(tmp_path / "workers") + ["--distribution_strategy=multi_worker_mirrored"],
                                      free_local_ports(2)))
    for code, err in results:
        assert code == 0, err[-3000:]
    assert fingerprint(results[0][1]) == fingerprint(results[1][1]) and fingerprint(one.stderr)[0] == "6"
    assert_same_weights(final_weights(tmp_path / "workers"), final_weights(tmp_path / "one"))
