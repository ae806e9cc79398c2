"""run_classifier.py end to end on tiny generated data: every GLUE file format, csv, the demo; outputs, flag
validation, resuming after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags

from tfx_transfer import BertEncoder
from tfx_transfer.checkpoints.writers import save_hf_checkpoint
from tfx_transfer.jobs import classifier

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
if "task_name" not in FLAGS:
    classifier.define_flags()

WORDS = ["good", "bad", "great", "awful", "movie", "plot", "fun", "dull", "a", "the", "is", "was", "very", "not"]
TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32, max_position_embeddings=64)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny pretrained-model directory (HF layout) with a word-level vocabulary."""
    directory = tmp_path_factory.mktemp("tiny") / "model"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    vocab_file = directory.parent / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    encoder = BertEncoder(vocab_size=len(vocab), **TINY)
    save_hf_checkpoint(encoder, directory, vocab_file=str(vocab_file), do_lower_case=True)
    return str(directory)


def _sentence(rng, n=6):
    return " ".join(rng.choice(WORDS, n))


def _write(path, rows, header=None):
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\ufeff" * path.name.startswith("bom") + "\n".join(lines) + "\n", encoding="utf-8")


def make_glue_dir(task, root, rng, n=12):
    """Files in the task's real GLUE layout (columns, headers, label names), as in ../shared/data."""
    d = root / task
    d.mkdir()
    s = lambda: _sentence(rng)  # noqa: E731
    if task == "CoLA":
        for split in ("train", "dev"):
            _write(d / f"{split}.tsv", [("gj04", rng.integers(0, 2), "", s()) for _ in range(n)])
        _write(d / "test.tsv", [(i, s()) for i in range(5)], ["index", "sentence"])
    elif task == "SST-2":
        for split in ("train", "dev"):
            _write(d / f"{split}.tsv", [(s(), rng.integers(0, 2)) for _ in range(n)], ["sentence", "label"])
        _write(d / "test.tsv", [(i, s()) for i in range(5)], ["index", "sentence"])
    elif task == "MRPC":
        header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
        for split in ("train", "dev"):
            _write(d / f"{split}.tsv", [(rng.integers(0, 2), 1, 2, s(), s()) for _ in range(n)], header)
        (d / "train.tsv").write_text("\ufeff" + (d / "train.tsv").read_text(encoding="utf-8"), encoding="utf-8")
        _write(d / "test.tsv", [(i, 1, 2, s(), s()) for i in range(5)], ["index", "#1 ID", "#2 ID", "#1 String",
                                                                         "#2 String"])
    elif task == "STS-B":
        header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
        for split in ("train", "dev"):
            _write(d / f"{split}.tsv", [(i, "g", "f", "y", i, "n", "n", s(), s(), f"{rng.uniform(0, 5):.3f}")
                                        for i in range(n)], header + ["score"])
        _write(d / "test.tsv", [(i, "g", "f", "y", i, "n", "n", s(), s()) for i in range(5)], header)
    elif task == "QQP":
        header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
        for split in ("train", "dev"):
            _write(d / f"{split}.tsv", [(i, 1, 2, s(), s(), rng.integers(0, 2)) for i in range(n)], header)
        _write(d / "test.tsv", [(i, s(), s()) for i in range(5)], ["id", "question1", "question2"])
    elif task == "MNLI":
        header = ["index", "promptID", "pairID", "genre", "s1bp", "s2bp", "s1p", "s2p", "sentence1", "sentence2",
                  "label1", "gold_label"]
        labels = ["contradiction", "entailment", "neutral"]
        row = lambda i: (i, 1, 1, "g", "", "", "", "", s(), s(), "x", labels[i % 3])  # noqa: E731
        for name in ("train", "dev_matched", "dev_mismatched"):
            _write(d / f"{name}.tsv", [row(i) for i in range(n)], header)
        _write(d / "test_matched.tsv", [row(i)[:10] for i in range(5)], header[:10])
    else:  # QNLI, RTE, WNLI: index, text_a, text_b, label
        labels = {"QNLI": ["entailment", "not_entailment"], "RTE": ["entailment", "not_entailment"],
                  "WNLI": ["0", "1"]}[task]
        header = ["index", "question", "sentence", "label"] if task == "QNLI" else \
            ["index", "sentence1", "sentence2", "label"]
        for split in ("train", "dev"):
            _write(d / f"{split}.tsv", [(i, s(), s(), labels[i % 2]) for i in range(n)], header)
        _write(d / "test.tsv", [(i, s(), s()) for i in range(5)], header[:3])
    return str(d)


def run_job(argv):
    """Parses flags (resetting previous values) and runs the classifier job in-process; returns the exit code."""
    FLAGS.unparse_flags()
    FLAGS(["run_classifier.py"] + argv)
    return classifier.main(["run_classifier.py"])


COMMON = ["--max_seq_length=32", "--train_batch_size=4", "--eval_batch_size=4", "--predict_batch_size=4",
          "--num_train_epochs=1", "--learning_rate=1e-3", "--run_eagerly", "--save_checkpoints_steps=2"]


@pytest.mark.parametrize("task", ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"])
def test_every_glue_format_end_to_end(task, tiny_model, tmp_path):
    data_dir = make_glue_dir(task, tmp_path, np.random.default_rng(0))
    out = tmp_path / "out"
    assert run_job([f"--task_name={task}", f"--data_dir={data_dir}", f"--pretrained={tiny_model}",
                    f"--output_dir={out}", "--do_train", "--do_eval", "--do_predict"] + COMMON) == 0
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    official = {"CoLA": "eval_mcc", "STS-B": "eval_pearson", "MRPC": "eval_f1", "QQP": "eval_f1"}.get(task,
                                                                                                   "eval_accuracy")
    assert list(results)[0] == official and "eval_loss" in results and results["global_step"] == "3"
    if task == "MNLI":
        assert "eval_dev_mismatched_accuracy" in results
    probabilities = [line.split("\t") for line in (out / "test_results.tsv").read_text().splitlines()]
    assert len(probabilities) == 5
    width = {"STS-B": 1, "MNLI": 3}.get(task, 2)
    assert all(len(row) == width for row in probabilities)
    if width > 1:
        assert all(abs(sum(map(float, row)) - 1) < 1e-4 for row in probabilities)
    submission = (out / f"{task}.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 6
    assert sorted(os.listdir(out / "final")) == ["config.json", "model.keras", "task.json", "tokenizer_config.json",
                                                 "vocab.txt"]


def test_csv_task_with_named_columns_and_adapters(tiny_model, tmp_path):
    rng = np.random.default_rng(1)
    for split in ("train", "dev", "test"):
        rows = [(f"id{i}", _sentence(rng), rng.choice(["yes", "no"])) for i in range(10)]
        (tmp_path / f"{split}.csv").write_text("id,review,verdict\n" + "\n".join(",".join(r) for r in rows) + "\n",
                                               encoding="utf-8")
    out = tmp_path / "out"
    assert run_job(["--task_name=csv", f"--train_file={tmp_path / 'train.csv'}", f"--dev_file={tmp_path / 'dev.csv'}",
                    f"--test_file={tmp_path / 'test.csv'}", "--delimiter=,", "--text_a_column=review",
                    "--label_column=verdict", "--label_list=no,yes", f"--pretrained={tiny_model}",
                    f"--output_dir={out}", "--do_train", "--do_eval", "--do_predict", "--adaptation=adapters",
                    "--adapter_size=4"] + COMMON) == 0
    assert (out / "final" / "adapter.safetensors").is_file()
    task = json.loads((out / "final" / "task.json").read_text())
    assert task["labels"] == ["no", "yes"] and task["adaptation"] == "adapters"
    assert (out / "csv.tsv").read_text().splitlines()[1].split("\t")[1] in ("no", "yes")
    # The final model is a valid --init_checkpoint: evaluate it without training, same metrics.
    again = tmp_path / "again"
    assert run_job(["--task_name=csv", f"--dev_file={tmp_path / 'dev.csv'}", "--delimiter=,", "--text_a_column=review",
                    "--label_column=verdict", "--label_list=no,yes", f"--init_checkpoint={out / 'final'}",
                    f"--output_dir={again}", "--do_eval", "--adaptation=adapters", "--adapter_size=4"] + COMMON) == 0
    first = dict(l.split(" = ") for l in (out / "eval_results.txt").read_text().splitlines())
    second = dict(l.split(" = ") for l in (again / "eval_results.txt").read_text().splitlines())
    assert first["eval_accuracy"] == second["eval_accuracy"] and first["eval_loss"] == second["eval_loss"]


@pytest.mark.parametrize("argv, message", [
    (["--task_name=SST-2", "--data_dir=."], "At least one of --do_train, --do_eval, --do_predict, --do_export must be set"),
    (["--task_name=NOPE", "--do_train"], "Unknown task_name 'NOPE'; known tasks: CoLA, SST-2, MRPC"),
    (["--task_name=SST-2", "--do_train"], "--data_dir is required for --task_name=SST-2"),
    (["--task_name=SST-2", "--data_dir=/nonexistent", "--do_train"], "--data_dir=/nonexistent: no such directory"),
    (["--task_name=demo", "--do_train", "--max_seq_length=100"], "Cannot use sequence length 100 because the BERT "
                                                                 "model was only trained up to sequence length 64"),
    (["--task_name=demo", "--do_train", "--train_batch_size=0"], "--train_batch_size=0 must be >= 1"),
    (["--task_name=demo", "--do_train", "--num_train_epochs=-1"], "--num_train_epochs=-1.0 must be > 0"),
    (["--task_name=demo", "--do_train", "--do_lower_case=false"], "--do_lower_case=False: do_lower_case=False, but "
                                                                 "the vocabulary is uncased"),
])
def test_flag_errors_are_one_line(argv, message, tiny_model, tmp_path, capsys):
    assert run_job(argv + [f"--pretrained={tiny_model}", f"--output_dir={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_missing_data_file_names_the_path(tiny_model, tmp_path, capsys):
    (tmp_path / "SST-2").mkdir()
    assert run_job(["--task_name=SST-2", f"--data_dir={tmp_path / 'SST-2'}", "--do_eval", "--max_seq_length=32",
                    f"--pretrained={tiny_model}",
                    f"--output_dir={tmp_path / 'o'}"]) == 2
    assert f"Data file not found: '{tmp_path / 'SST-2' / 'dev.tsv'}'" in capsys.readouterr().err


def _final_weights(out):
    import keras

    model = keras.models.load_model(os.path.join(out, "final", "model.keras"))
    return [np.asarray(w) for w in model.weights]


def test_interrupted_training_resumes_to_the_same_weights(tiny_model, tmp_path):
    """kill -9 a real training process after its first checkpoint; the same command resumes and ends where an
    uninterrupted run ends."""
    data_dir = make_glue_dir("SST-2", tmp_path, np.random.default_rng(2), n=64)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def command(out):
        return [sys.executable, os.path.join(REPO, "run_classifier.py"), "--task_name=SST-2", f"--data_dir={data_dir}",
                f"--pretrained={tiny_model}", f"--output_dir={out}", "--do_train", "--max_seq_length=32",
                "--train_batch_size=4", "--num_train_epochs=2", "--learning_rate=1e-3", "--save_checkpoints_steps=4",
                "--seed=7"]

    reference = tmp_path / "uninterrupted"
    subprocess.run(command(reference), check=True, env=env, capture_output=True, cwd=REPO)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=REPO)
    deadline = time.time() + 120
    checkpoints = interrupted / "checkpoints"
    while time.time() < deadline:
        done = [n for n in os.listdir(checkpoints)] if checkpoints.is_dir() else []
        if any(n.startswith("ckpt-") for n in done):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(n.split("-")[1]) for n in os.listdir(checkpoints) if n.startswith("ckpt-"))
    assert saved and saved[-1] < 32, saved  # killed mid-training (32 steps in all)
    assert not (interrupted / "final").exists()

    resumed = subprocess.run(command(interrupted), env=env, capture_output=True, text=True, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming training from {checkpoints / f'ckpt-{saved[-1]}'}: step {saved[-1]} of 32" in resumed.stderr
    for a, b in zip(_final_weights(reference), _final_weights(interrupted)):
        np.testing.assert_allclose(a, b, atol=1e-5)
