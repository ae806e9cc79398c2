"""Bad input gets a clear answer: the catalogue.

One row per bad input a user can give the scripts. Each row runs the real job (in-process, through the same `main`
the command line uses) and asserts exit code 2 and a single `error: ...` line that names the input and the fix.
New features add rows here. Library-level checks with their own tests are listed at the end of the module (they
are not repeated).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Callable, Dict, Optional

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfx_transfer.jobs import classifier
from tfx_transfer.jobs import squad as squad_job

FLAGS = flags.FLAGS
if "task_name" not in FLAGS:
    classifier.define_flags()
if "doc_stride" not in FLAGS:
    squad_job.define_flags()

from conftest import WORDS  # noqa: E402  (the tiny model's vocabulary)

GOOD_ROWS = ["a good movie\t1", "the plot was dull\t0", "very fun\t1", "awful\t0"]


@dataclasses.dataclass
class Case:
    """A bad input. `setup(ctx)` writes whatever files the case needs and returns flag overrides (None removes a
    flag); `message` must appear in the one error line."""

    name: str
    setup: Callable[["Context"], Dict[str, Optional[str]]]
    message: str
    job: str = "classifier"


class Context:
    def __init__(self, tmp_path, tiny_model):
        self.tmp = tmp_path
        self.model = tiny_model

    def data_dir(self, train_lines=None, raw: Optional[bytes] = None, dev_lines=None, test_lines=None) -> str:
        """An SST-2 directory (header `sentence\\tlabel`) whose train.tsv holds `train_lines` or `raw` bytes, dev.tsv
        `dev_lines` and test.tsv (header `index\\tsentence`) `test_lines`."""
        d = self.tmp / "SST-2"
        d.mkdir(exist_ok=True)
        if raw is None:
            raw = ("sentence\tlabel\n" + "".join(line + "\n" for line in (train_lines or GOOD_ROWS))).encode()
        (d / "train.tsv").write_bytes(raw)
        (d / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(dev_lines or GOOD_ROWS) + "\n", encoding="utf-8")
        tests = test_lines or [f"{i}\t{row.split(chr(9))[0]}" for i, row in enumerate(GOOD_ROWS)]
        (d / "test.tsv").write_text("index\tsentence\n" + "\n".join(tests) + "\n", encoding="utf-8")
        return str(d)

    def text_file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def generic(self, name: str, text: str, task="csv", **flags) -> Dict[str, Optional[str]]:
        """Flags of a csv/tsv task whose train, dev and test file is `text` (columns review, verdict: no/yes)."""
        path = self.text_file(name, text)
        return {"task_name": task, "data_dir": None, "train_file": path, "dev_file": path, "test_file": path,
                "text_a_column": "review", "label_column": "verdict", "label_list": "no,yes", **flags}

    def hold_lock(self) -> Dict[str, Optional[str]]:
        """--output_dir locked by a live run (this process holds the lock on another file description)."""
        from tfx_transfer.jobs.run_lock import OutputDirLock

        (self.tmp / "o").mkdir(exist_ok=True)
        self.lock = OutputDirLock(str(self.tmp / "o")).acquire()
        return {}

    def model_copy(self) -> str:
        """A writable copy of the tiny pretrained-model directory."""
        target = self.tmp / "model_copy"
        if not target.exists():
            shutil.copytree(self.model, target)
        return str(target)

    def squad_file(self, data) -> str:
        path = self.tmp / "squad.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        return str(path)


def _saved_model_without_bert_interface(ctx):
    module = tf.Module()
    module.double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.float32)])
    path = str(ctx.tmp / "not_bert")
    tf.saved_model.save(module, path, signatures={"double": module.double})
    return {"pretrained": None, "hub_module_handle": path}


def _truncated_checkpoint(ctx):
    model = ctx.model_copy()
    weights = os.path.join(model, "model.safetensors")
    data = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 2])
    return {"pretrained": None, "init_checkpoint": model}


def _garbage_checkpoint(ctx):
    model = ctx.model_copy()
    with open(os.path.join(model, "model.safetensors"), "wb") as f:
        f.write(b"PK\x03\x04 this is a zip file, not safetensors")
    return {"pretrained": None, "init_checkpoint": model}


def _config_with(ctx, **changes):
    config = json.loads(open(os.path.join(ctx.model, "config.json"), encoding="utf-8").read())
    config.update(changes)
    path = ctx.tmp / "bert_config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return {"pretrained": None, "init_checkpoint": ctx.model, "bert_config_file": str(path)}


def _vocab_file(ctx, tokens):
    path = ctx.tmp / "vocab_user.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def _symlinked_output(ctx):
    out = ctx.tmp / "o"
    out.mkdir()
    outside = ctx.tmp / "outside.txt"
    outside.write_text("precious\n", encoding="utf-8")
    os.symlink(outside, out / "eval_results.txt")
    return {"do_train": None, "do_eval": "true"}


def _squad_article(context, qas):
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": qid, "question": q, "answers": [{"text": a, "answer_start": s}]} for qid, q, a, s in qas]}]}]}


CASES = [
    # ---- flags
    Case("conflicting model sources", lambda c: {"init_checkpoint": c.model, "hub_module_handle": c.model},
         "--hub_module_handle and --init_checkpoint and --pretrained all name the initial model; pass only one"),
    Case("missing init_checkpoint", lambda c: {"pretrained": None, "init_checkpoint": str(c.tmp / "nope")},
         "--init_checkpoint="),
    Case("missing vocab_file", lambda c: {"vocab_file": str(c.tmp / "vocab.txt")}, "file not found"),
    Case("missing data file", lambda c: {"data_dir": str(c.tmp)}, "Data file not found: "),
    Case("missing data_dir", lambda c: {"data_dir": str(c.tmp / "nowhere")}, "nowhere: no such directory"),
    Case("no data_dir", lambda c: {"data_dir": None}, "--data_dir is required for --task_name=SST-2"),
    Case("no task_name", lambda c: {"task_name": None}, "--task_name is required; known tasks: CoLA"),
    Case("unknown task", lambda c: {"task_name": "NOPE"}, "Unknown task_name 'NOPE'; known tasks: CoLA, SST-2"),
    Case("max_seq_length over the model's positions", lambda c: {"max_seq_length": "100"},
         "Cannot use sequence length 100 because the BERT model was only trained up to sequence length 64"),
    Case("zero batch size", lambda c: {"train_batch_size": "0"}, "--train_batch_size=0 must be >= 1"),
    Case("negative batch size", lambda c: {"eval_batch_size": "-8"}, "--eval_batch_size=-8 must be >= 1"),
    Case("negative epochs", lambda c: {"num_train_epochs": "-1"}, "--num_train_epochs=-1.0 must be > 0"),
    Case("zero epochs", lambda c: {"num_train_epochs": "0"}, "--num_train_epochs=0.0 must be > 0"),
    Case("output_dir is a file", lambda c: (c.tmp / "file").write_text("x") and {"output_dir": str(c.tmp / "file")},
         "is a file; give a directory"),
    Case("no mode", lambda c: {"do_train": None}, "At least one of --do_train, --do_eval, --do_predict"),
    Case("lora kind with adapters", lambda c: {"adaptation": "adapters", "adapter_kind": "lora"},
         "--adapter_kind=lora goes with --adaptation=lora"),
    Case("num_cpu_devices zero", lambda c: {"distribution_strategy": "mirrored", "num_cpu_devices": "0"},
         "--num_cpu_devices=0 must be >= 1"),
    Case("more GPUs than the host has", lambda c: {"distribution_strategy": "mirrored", "num_gpus": "2"},
         "--num_gpus=2, but TensorFlow sees 0 GPU(s)"),
    Case("all-reduce algorithm of the other strategy", lambda c: {"distribution_strategy": "mirrored",
                                                                  "all_reduce_alg": "ring"},
         "--all_reduce_alg=ring is for multi_worker_mirrored"),
    # ---- data
    Case("missing column", lambda c: {"data_dir": c.data_dir(GOOD_ROWS + ["just text"])},
         "train.tsv, line 6: 1 column(s), the SST-2 format has at least 2"),
    Case("extra column", lambda c: {"data_dir": c.data_dir(GOOD_ROWS[:1] + ["a\tgood movie\t1"])},
         "train.tsv, line 3: 3 columns but the header has 2"),
    Case("label not in the label list", lambda c: {"data_dir": c.data_dir(GOOD_ROWS + ["a movie\t7"])},
         "train.tsv, line 6: label '7' is not one of the SST-2 labels ['0', '1']"),
    Case("empty file", lambda c: {"data_dir": c.data_dir(raw=b"")}, "train.tsv: no examples (the file is empty)."),
    Case("empty csv file", lambda c: (c.tmp / "t.csv").write_text("") == 0 and {
        "task_name": "csv", "data_dir": None, "train_file": str(c.tmp / "t.csv"), "delimiter": ",",
        "text_a_column": "review", "label_column": "verdict", "label_list": "no,yes"},
         "t.csv: no examples (the file is empty)."),
    Case("header-only file", lambda c: {"data_dir": c.data_dir(raw=b"sentence\tlabel\n")},
         "no examples (the file is empty apart from its header)"),
    Case("non-UTF-8 bytes",
         lambda c: {"data_dir": c.data_dir(raw=b"sentence\tlabel\na good movie\t1\nna\xefve\xff\t0\n")},
         "train.tsv, line 3: not UTF-8 (invalid continuation byte at byte 2); fix the file or pass "
         "--encoding_errors=replace"),
    Case("blank text with --empty_texts=error", lambda c: {"data_dir": c.data_dir(GOOD_ROWS + ["   \t1"]),
                                                           "empty_texts": "error"},
         "train.tsv, line 6: empty text (--empty_texts=error); remove the row or fill it in"),
    Case("csv quote that is never closed", lambda c: c.generic("q.csv", 'review,verdict\n"never closed,yes\nok,no\n'),
         'q.csv, line 2: the quote (") opened here is never closed'),
    Case("csv text holding the delimiter, unquoted", lambda c: c.generic(
        "q.csv", "review,verdict\ngood, really good,yes\n"),
         "q.csv, line 2: 3 columns but the header has 2: a text probably contains a comma (the delimiter); put that "
         'text in quotes ("...")'),
    Case("delimiter of two characters", lambda c: c.generic("q.csv", "review;verdict\n", delimiter=";;"),
         "--delimiter=';;' must be one character"),
    Case("bad dev file with --do_train", lambda c: {"do_eval": "true",
                                                    "data_dir": c.data_dir(dev_lines=GOOD_ROWS + ["a\tb\t1"])},
         "dev.tsv, line 6: 3 columns but the header has 2"),
    Case("bad test file with --do_train", lambda c: {"do_predict": "true", "data_dir": c.data_dir(
        test_lines=["0\tfine", "1"])}, "test.tsv, line 3: 1 column(s), the SST-2 format has at least 2"),
    Case("teacher probabilities for other examples", lambda c: {"teacher_probabilities": c.text_file(
        "teacher.tsv", "0.5\t0.5\n0.1\t0.9\n")}, "--teacher_probabilities: 2 teacher rows for 4 training examples"),
    Case("auxiliary task with a bad file", lambda c: {"auxiliary_tasks": "CoLA:" + os.path.dirname(c.text_file(
        "train.tsv", "gj04\t1\t\tfine\nbroken\n"))}, "train.tsv, line 2: 1 column(s), the CoLA format has at least 4"),
    Case("csv column that is not in the header", lambda c: (
        (c.tmp / "t.csv").write_text("review,verdict\ngood,yes\n") and
        {"task_name": "csv", "data_dir": None, "train_file": str(c.tmp / "t.csv"), "delimiter": ",",
         "text_a_column": "text", "label_column": "verdict", "label_list": "no,yes"}), "'text'"),
    # ---- evaluation during training
    Case("keep_best metric the task does not report", lambda c: {"do_eval": "true", "eval_every_steps": "1",
                                                                 "keep_best": "eval_bleu"},
         "--keep_best=eval_bleu: the evaluation reports eval_accuracy, eval_loss"),
    Case("early stopping without evaluation during training", lambda c: {"early_stopping_patience": "2"},
         "--keep_best and --early_stopping_patience choose among evaluations during training"),
    Case("evaluation during training without --do_eval", lambda c: {"eval_every_epoch": "true"},
         "--eval_every_steps / --eval_every_epoch evaluate on the dev set: add --do_eval"),
    Case("evaluation during training without --do_train", lambda c: {"do_train": None, "do_eval": "true",
                                                                     "eval_every_steps": "2"},
         "--eval_every_steps and --eval_every_epoch evaluate during training: add --do_train"),
    Case("SQuAD: evaluation during training without --eval", lambda c: {
        "do_train": "true", "eval_every_steps": "2",
        "train_file": c.squad_file(_squad_article("a good movie", [("q7", "what?", "movie", 7)]))},
         "score --predict_file during training: add --do_predict --eval", job="squad"),
    # ---- checkpoints
    Case("not a checkpoint", lambda c: (c.tmp / "weights.bin").write_bytes(b"\0" * 64) and
         {"pretrained": None, "init_checkpoint": str(c.tmp / "weights.bin")}, "--init_checkpoint="),
    Case("wrong checkpoint format", _garbage_checkpoint, "not a readable safetensors file"),
    Case("truncated checkpoint", _truncated_checkpoint, "not a readable safetensors file"),
    Case("vocab larger than the embedding table",
         lambda c: {"vocab_file": _vocab_file(c, ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(80)])},
         "has 84 tokens but the model"),
    Case("cased vocab with --do_lower_case=true",
         lambda c: {"do_lower_case": "true", "vocab_file": _vocab_file(
             c, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + [w.title() for w in WORDS])},
         "--do_lower_case=True: do_lower_case=True, but the vocabulary is cased"),
    Case("uncased vocab with --do_lower_case=false", lambda c: {"do_lower_case": "false"},
         "--do_lower_case=False: do_lower_case=False, but the vocabulary is uncased"),
    Case("config has more layers than the weights", lambda c: _config_with(c, num_hidden_layers=3),
         "not in the checkpoint"),
    Case("config hidden size differs from the weights",
         lambda c: _config_with(c, hidden_size=32, intermediate_size=64), "Shape mismatch"),
    Case("config hidden size not divisible by heads", lambda c: _config_with(c, hidden_size=18), "not divisible"),
    Case("config field of the wrong type", lambda c: _config_with(c, num_hidden_layers="2"),
         "num_hidden_layers='2' must be a positive integer"),
    Case("config that is not a BERT config", lambda c: _config_with(c, model_type="gpt2"),
         "model_type='gpt2' is not a BERT model"),
    Case("config that is not JSON", lambda c: (c.tmp / "bert_config.json").write_text("{hidden_size: 16") and {
        "pretrained": None, "init_checkpoint": c.model, "bert_config_file": str(c.tmp / "bert_config.json")},
         "bert_config.json"),
    # ---- TF Hub
    Case("Hub handle that is not a SavedModel", lambda c: {"pretrained": None, "hub_module_handle": str(c.tmp)},
         "is not a SavedModel"),
    Case("SavedModel without the BERT interface", _saved_model_without_bert_interface,
         "has no BERT encoder interface"),
    # ---- outputs
    Case("output file symlinked outside --output_dir", _symlinked_output, "Refusing to write"),
    Case("output_dir not writable", lambda c: {"output_dir": "/proc/tfx_transfer_out"},
         "--output_dir=/proc/tfx_transfer_out: cannot write there"),
    Case("output_dir in use by a live run", lambda c: c.hold_lock(), "is in use by a live run (pid "),
    # ---- SQuAD
    Case("SQuAD: doc_stride >= max_seq_length", lambda c: {"doc_stride": "32"},
         "--doc_stride=32 must be between 1 and --max_seq_length - 1", job="squad"),
    Case("SQuAD: max_seq_length too small for the query", lambda c: {"max_query_length": "40"},
         "The max_seq_length (32) must be greater than max_query_length (40) + 3", job="squad"),
    Case("SQuAD: missing predict file", lambda c: {"predict_file": str(c.tmp / "dev.json")},
         "dev.json", job="squad"),
    Case("SQuAD: JSON that is not SQuAD", lambda c: {"predict_file": c.squad_file({"rows": []})},
         "the top-level object has no 'data' key", job="squad"),
    Case("SQuAD: question without an id", lambda c: {"predict_file": c.squad_file(
        {"data": [{"paragraphs": [{"context": "a movie", "qas": [{"question": "what?", "answers": []}]}]}]})},
         "a question has no 'id' key", job="squad"),
    Case("SQuAD: answer_start out of range", lambda c: {
        "do_predict": None, "do_train": "true", "predict_file": None,
        "train_file": c.squad_file(_squad_article("a good movie", [("q7", "what?", "movie", 99)]))},
         "question q7: answer_start=99", job="squad"),
    Case("SQuAD: bad predict file with --do_train", lambda c: (c.tmp / "dev.json").write_text("{") and {
        "do_train": "true", "predict_file": str(c.tmp / "dev.json"),
        "train_file": c.squad_file(_squad_article("a good movie", [("q7", "what?", "movie", 7)]))},
         "dev.json", job="squad"),
    Case("SQuAD: not JSON at all", lambda c: (c.tmp / "dev.json").write_text("id\ttext\n") and
         {"predict_file": str(c.tmp / "dev.json")}, "dev.json", job="squad"),
]


def _argv(case: Case, ctx: Context):
    if case.job == "classifier":
        base = {"task_name": "SST-2", "data_dir": ctx.data_dir(), "do_train": "true", "max_seq_length": "32",
                "train_batch_size": "2", "run_eagerly": "true"}
    else:
        base = {"predict_file": ctx.squad_file(_squad_article("a good movie", [("q1", "what?", "movie", 7)])),
                "do_predict": "true", "max_seq_length": "32", "max_query_length": "8", "doc_stride": "8"}
    base.update({"pretrained": ctx.model, "output_dir": str(ctx.tmp / "o")})
    base.update(case.setup(ctx))
    return [f"--{name}={value}" for name, value in base.items() if value is not None]


def run_job(case: Case, argv):
    FLAGS.unparse_flags()
    script = "run_classifier.py" if case.job == "classifier" else "run_squad.py"
    FLAGS([script] + argv)
    return (classifier if case.job == "classifier" else squad_job).main([script])


def _files(directory):
    return {os.path.join(root, name) for root, _, names in os.walk(directory) for name in names}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_line(case, tiny_model, tmp_path, capsys):
    argv = _argv(case, Context(tmp_path, tiny_model))
    before = _files(tmp_path / "o")
    capsys.readouterr()
    assert run_job(case, argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and case.message in err[0], (err, case.message)
    assert _files(tmp_path / "o") == before  # no partial output


@dataclasses.dataclass
class Works:
    """A real-world input that must work: `setup(ctx)` returns flag overrides; `check(out, printed, log)` asserts on
    the output directory, what the job printed and its log."""

    name: str
    setup: Callable[["Context"], Dict[str, Optional[str]]]
    check: Callable[[object, str, str], None]


def _stale_lock(ctx):
    (ctx.tmp / "o").mkdir()
    (ctx.tmp / "o" / ".tfx_transfer.lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": 0}))
    return {}


def _printed(*texts):
    def check(out, printed, log):
        for text in texts:
            assert f"  {text!r} -> " in printed, (text, printed)
    return check


def _eval_ran(also=""):
    def check(out, printed, log):
        assert (out / "eval_results.txt").is_file() and also in log, log[-3000:]
    return check


WORKS = [
    Works("an empty review in the dev file", lambda c: {"do_eval": "true", "data_dir": c.data_dir(
        dev_lines=GOOD_ROWS[:2] + ["\t1"] + GOOD_ROWS[2:])},
          _eval_ran("dev.tsv: 1 empty text(s) (lines 4), processed as [CLS] [SEP]")),
    Works("RFC 4180 csv: quoted delimiters", lambda c: c.generic(
        "q.csv", 'review,verdict\n"good, really good",yes\n"dull, so dull",no\n', do_predict="true"),
          _printed("good, really good", "dull, so dull")),
    Works("RFC 4180 csv: newlines and doubled quotes inside quotes", lambda c: c.generic(
        "q.csv", 'review,verdict\n"a ""good""\nmovie",yes\nawful,no\n', do_predict="true"),
          _printed('a "good"\nmovie', "awful")),
    Works("tsv task with quotes inside texts", lambda c: c.generic(
        "q.tsv", 'review\tverdict\nhe said "fun" twice\tyes\n"a\ttabbed text"\tno\n', task="tsv",
        do_predict="true"), _printed('he said "fun" twice', "a\ttabbed text")),
    Works("tsv with --quotechar=none: a quote opening a text", lambda c: c.generic(
        "q.tsv", 'review\tverdict\n"dull\tno\nfun\tyes\n', task="tsv", quotechar="none", do_predict="true"),
          _printed('"dull', "fun")),
    Works("a stale lock left by a killed run", _stale_lock, lambda out, printed, log: (
        "taking over the lock of a run that is no longer alive (pid 999999 on gone" in log
        and not (out / ".tfx_transfer.lock").exists()) or pytest.fail(log[-2000:])),
]


@pytest.mark.parametrize("case", WORKS, ids=[c.name for c in WORKS])
def test_real_input_works(case, tiny_model, tmp_path, capsys, absl_log):
    argv = _argv(Case(case.name, case.setup, ""), Context(tmp_path, tiny_model)) + ["--num_train_epochs=1",
                                                                                   "--verbosity=0"]
    code = run_job(Case(case.name, case.setup, ""), argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    case.check(tmp_path / "o", captured.out, absl_log.text)


def test_a_bad_dev_file_fails_before_any_training_step(tiny_model, tmp_path, monkeypatch, capsys):
    """Everything the run will read is read before the model is built: a broken dev file costs seconds."""
    from tfx_transfer.jobs import classifier as job

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model was built / training started before the dev file was read")

    monkeypatch.setattr(job, "build_model", must_not_run)
    monkeypatch.setattr(job, "compile_and_train", must_not_run)
    case = next(c for c in CASES if c.name == "bad dev file with --do_train")
    assert run_job(case, _argv(case, Context(tmp_path, tiny_model))) == 2
    assert "dev.tsv, line 6" in capsys.readouterr().err
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_symlinked_output_is_left_untouched(tiny_model, tmp_path, capsys):
    case = next(c for c in CASES if c.name == "output file symlinked outside --output_dir")
    assert run_job(case, _argv(case, Context(tmp_path, tiny_model))) == 2
    assert (tmp_path / "outside.txt").read_text() == "precious\n"


def test_encoding_errors_replace_reads_the_file(tiny_model, tmp_path):
    ctx = Context(tmp_path, tiny_model)
    raw = b"sentence\tlabel\na good movie\t1\nthe plot was dull \xff\t0\nvery fun\t1\n"
    case = Case("replace", lambda c: {"data_dir": c.data_dir(raw=raw), "encoding_errors": "replace",
                                      "num_train_epochs": "1"}, "")
    assert run_job(case, _argv(case, ctx)) == 0
    assert (tmp_path / "o" / "final" / "model.keras").is_file()


def test_qqp_skips_its_known_broken_rows(tmp_path, caplog):
    from tfx_transfer.data.glue import get_processor

    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    rows = ["1\t1\t2\tis it good?\tis it bad?\t0", "2\t3\t4\twhat?", "3\t5\t6\t\tempty?\t1",
            "4\t7\t8\tfun?\tdull?\t1"]
    (tmp_path / "train.tsv").write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    examples = get_processor("QQP").train_examples(str(tmp_path))
    assert [e.text_a for e in examples] == ["is it good?", "", "fun?"]  # an empty question is kept, as HF does
    assert "skipped 1 malformed row(s) (lines 3)" in caplog.text and "1 empty text(s) (lines 4)" in caplog.text


def test_catalogue_is_one_row_per_input():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 45


def test_too_little_disk_space_stops_before_training(tiny_model, tmp_path, capsys, monkeypatch):
    import collections

    from tfx_transfer.jobs import outputs

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 4096, 4096))
    case = Case("disk full", lambda c: {}, "")
    assert run_job(case, _argv(case, Context(tmp_path, tiny_model))) == 2
    err = capsys.readouterr().err
    assert "0 MiB free, but checkpoints and the final model need about" in err
    assert not (tmp_path / "o" / "checkpoints").exists() or not os.listdir(tmp_path / "o" / "checkpoints")


class _PoisonWeights:
    """A Keras callback that sets one weight to NaN before training step `at` (1-based, counted across fits)."""

    def __new__(cls, at):
        import keras

        class Poison(keras.callbacks.Callback):
            seen = 0

            def on_train_batch_begin(self, batch, logs=None):
                Poison.seen += 1
                if Poison.seen == at:
                    weight = self.model.trainable_weights[0]
                    weight.assign(np.full(weight.shape, np.nan, weight.dtype))

        return Poison()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_model, tmp_path):
    import keras

    from tfx_transfer import BertClassifier, BertEncoder
    from tfx_transfer.data.examples import InputExample
    from tfx_transfer.data.pipeline import encode_examples
    from tfx_transfer.jobs import trainer
    from tfx_transfer.text.tokenizer import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(tiny_model)
    examples = [InputExample(str(i), " ".join(WORDS[i % 7: i % 7 + 4]), label=str(i % 2)) for i in range(24)]
    split = encode_examples(examples, tokenizer, 32, label_list=["0", "1"])
    model = BertClassifier(BertEncoder.from_pretrained(tiny_model), 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    checkpoint_dir = str(tmp_path / "checkpoints")
    with pytest.raises(trainer.TrainingDiverged) as error:
        trainer.train(model, split, epochs=1, batch_size=4, max_seq_length=32, seed=0, checkpoint_dir=checkpoint_dir,
                      save_every_steps=2, verbose=0, callbacks=[_PoisonWeights(at=4)])
    message = str(error.value)
    assert message.startswith("The loss is nan at step 4: training stopped and nothing was saved (the last good "
                              f"checkpoint is {os.path.join(checkpoint_dir, 'ckpt-2')})")
    assert sorted(os.listdir(checkpoint_dir)) == ["ckpt-2"]
    restored = np.load(os.path.join(checkpoint_dir, "ckpt-2", "variables.npz"))
    assert all(np.isfinite(restored[k]).all() for k in restored.files if restored[k].dtype.kind == "f")


def test_checkpoint_write_failure_leaves_the_previous_one(tmp_path, monkeypatch):
    import keras

    from tfx_transfer.jobs import training_state

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    checkpoints = training_state.TrainingCheckpoints(str(tmp_path / "c"))
    first = checkpoints.save(model, 1)

    real_write, written = np.lib.format.write_array, []

    def disk_full_on_the_second_array(*args, **kwargs):  # the file is being written one variable at a time
        if written:
            raise OSError(28, "No space left on device")
        written.append(real_write(*args, **kwargs))

    monkeypatch.setattr(training_state.np.lib.format, "write_array", disk_full_on_the_second_array)
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save(model, 2)
    monkeypatch.undo()
    assert written and checkpoints.latest() == first and sorted(os.listdir(tmp_path / "c")) == ["ckpt-1"]


def test_checkpoint_file_is_np_savez_format_and_non_finite_weights_write_nothing(tmp_path):
    import keras

    from tfx_transfer.jobs import training_state

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    checkpoints = training_state.TrainingCheckpoints(str(tmp_path / "c"))
    first = checkpoints.save(model, 1)
    model_vars, optimizer_vars = training_state._model_variables(model), training_state._optimizer_variables(model)
    with np.load(os.path.join(first, "variables.npz")) as arrays:
        assert sorted(arrays.files) == sorted([f"m{i}" for i in range(len(model_vars))] +
                                              [f"o{i}" for i in range(len(optimizer_vars))])
        for prefix, variables in (("m", model_vars), ("o", optimizer_vars)):
            for i, variable in enumerate(variables):
                assert np.array_equal(arrays[f"{prefix}{i}"], np.asarray(variable))
    model.layers[1].kernel.assign(np.full((3, 2), np.nan, "float32"))
    with pytest.raises(FloatingPointError, match=r"Non-finite weights \(.*kernel"):
        checkpoints.save(model, 2)
    assert sorted(os.listdir(tmp_path / "c")) == ["ckpt-1"]


def test_result_files_are_replaced_atomically(tmp_path, monkeypatch):
    from tfx_transfer.io_utils import write_json
    from tfx_transfer.jobs.outputs import write_text

    for write, path, old, new in [(write_text, tmp_path / "r.txt", "old\n", "new\n"),
                                  (write_json, tmp_path / "r.json", {"a": 1}, {"a": 2})]:
        write(str(path), old)
        kept = path.read_bytes()
        real_replace = os.replace
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
        with pytest.raises(OSError):
            write(str(path), new)
        monkeypatch.setattr(os, "replace", real_replace)
        assert path.read_bytes() == kept


# Library-level rows with their own tests (not repeated here):
#   adapter file for another base model ........ tests/test_adapters.py (fingerprint / architecture refusal)
#   vocab rows vs embeddings, object-based TF2 checkpoint, truncated TF checkpoint ... tests/test_checkpoint_formats.py
#   serving: non-string input, empty batch ..... tests/test_export.py
#   interrupted training (kill -9) resumes to the same weights ... tests/test_run_classifier.py


def test_final_model_save_streams_its_weights_and_loads_back_the_same(tmp_path, monkeypatch):
    import keras
    from keras.src.saving import saving_lib

    from tfx_transfer.keras_compat import save_model_streaming

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    stores = []
    real_init = saving_lib.H5IOStore.__init__

    def recording_init(self, path_or_io, *args, archive=None, **kwargs):
        stores.append(archive)
        real_init(self, path_or_io, *args, archive=archive, **kwargs)

    monkeypatch.setattr(saving_lib.H5IOStore, "__init__", recording_init)
    save_model_streaming(model, str(tmp_path / "m.keras"))
    assert stores == [None]  # weights.h5 written to a file, not into the zip from memory
    assert saving_lib.is_memory_sufficient(model) is True  # Keras's own check is back
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]  # no temporary file left beside it
