"""run_ner.py end to end on a tiny model: CoNLL and CoNLL-U in, eval_results.txt / predictions / final/ out."""

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from tfx_transfer.jobs import ner

FLAGS = flags.FLAGS
if "word_column" not in FLAGS:
    ner.define_flags()

from conftest import WORDS  # noqa: E402  (the tiny model's vocabulary)

# A learnable rule over the tiny vocabulary: adjectives are one-word entities of type Q, "movie" / "plot" of type N.
ADJECTIVES = {"good", "bad", "great", "awful", "fun", "dull"}


def _tags(words):
    return ["B-Q" if w in ADJECTIVES else "B-N" if w in ("movie", "plot") else "O" for w in words]


def _conll(path, count, seed, docstart=True):
    rng = np.random.default_rng(seed)
    lines = ["-DOCSTART- -X- O", ""] if docstart else []
    sentences = []
    for _ in range(count):
        words = list(rng.choice(WORDS, rng.integers(3, 9)))
        sentences.append((words, _tags(words)))
        lines += [f"{w} X {t}" for w, t in zip(words, _tags(words))] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sentences


def run_job(argv):
    FLAGS.unparse_flags()
    FLAGS(["run_ner.py"] + argv)
    return ner.main(["run_ner.py"])


COMMON = ["--max_seq_length=16", "--train_batch_size=8", "--eval_batch_size=8", "--predict_batch_size=8",
          "--learning_rate=3e-3", "--save_checkpoints_steps=1000", "--label_column=-1"]


def _results(out):
    lines = (out / "eval_results.txt").read_text(encoding="utf-8").splitlines()
    return {k: float(v) for k, v in (line.split(" = ") for line in lines)}


@pytest.mark.parametrize("adaptation", ["full", "adapters"])
def test_run_ner_trains_evaluates_and_predicts(tiny_model, tmp_path, adaptation):
    train, dev, test = tmp_path / "train.txt", tmp_path / "dev.txt", tmp_path / "test.txt"
    _conll(train, 160, 0)
    gold = _conll(dev, 40, 1, docstart=False)
    _conll(test, 5, 2)
    out = tmp_path / "out"
    extra = ["--adaptation=adapters", "--adapter_size=8", "--learning_rate=1e-2"] if adaptation == "adapters" else []
    assert run_job([f"--pretrained={tiny_model}", f"--train_file={train}", f"--dev_file={dev}",
                    f"--test_file={test}", f"--output_dir={out}", "--do_train", "--do_eval", "--do_predict",
                    f"--export_dir={tmp_path / 'serving'}", "--num_train_epochs=6", *COMMON, *extra]) == 0
    results = _results(out)
    assert set(results) >= {"eval_accuracy", "eval_precision", "eval_recall", "eval_f1", "eval_f1_Q", "eval_f1_N",
                            "eval_loss", "global_step"}
    # Majority tag O is 43% of the words; adapters on the tiny random encoder learn less in the same budget.
    accuracy, f1 = (0.9, 0.8) if adaptation == "full" else (0.7, 0.6)
    assert results["eval_accuracy"] > accuracy and results["eval_f1"] > f1, results
    predicted = (out / "eval_predictions.txt").read_text(encoding="utf-8").split("\n\n")
    first_words, first_gold = gold[0]
    assert [line.split() for line in predicted[0].splitlines()][0][:2] == [first_words[0], first_gold[0]]
    assert len([b for b in predicted if b.strip()]) == len(gold)
    test_lines = [line.split() for line in (out / "test_predictions.txt").read_text(encoding="utf-8").splitlines()
                  if line]
    assert all(len(parts) == 2 and parts[1] in ("O", "B-Q", "B-N") for parts in test_lines)
    # The TF Serving export tags raw text as --do_predict tagged the test file's words.
    sentences = [[line.split() for line in block.splitlines()]
                 for block in (out / "test_predictions.txt").read_text(encoding="utf-8").split("\n\n") if block.strip()]
    served = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"](
        text=tf.constant([" ".join(word for word, _ in sentence) for sentence in sentences]))
    for i, sentence in enumerate(sentences):
        assert [label.decode() for label in served["labels"].numpy()[i][:len(sentence)]] == [t for _, t in sentence]
    task = (out / "final" / "task.json").read_text(encoding="utf-8")
    assert '"token_classification"' in task and '"B-Q"' in task
    assert (out / "final" / "adapter.safetensors").is_file() == (adaptation == "adapters")
    # final/ is a valid --init_checkpoint: the head comes with it, evaluation reproduces the metrics.
    again = tmp_path / "again"
    assert run_job([f"--init_checkpoint={out / 'final'}", f"--dev_file={dev}", f"--output_dir={again}",
                    "--do_eval", *COMMON, *extra]) == 0
    assert _results(again)["eval_f1"] == pytest.approx(results["eval_f1"], abs=1e-9)


def test_run_ner_reads_conllu_upos(tiny_model, tmp_path):
    rows = []
    rng = np.random.default_rng(3)
    for s in range(40):
        words = list(rng.choice(WORDS, rng.integers(2, 6)))
        rows.append(f"# sent_id = s{s}")
        rows += [f"{i + 1}\t{w}\t{w}\t{'ADJ' if w in ADJECTIVES else 'X'}\t_\t_\t0\troot\t_\t_"
                 for i, w in enumerate(words)]
        rows.append("")
    path = tmp_path / "tiny.conllu"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = [f"--pretrained={tiny_model}", f"--train_file={path}", f"--dev_file={path}", f"--output_dir={out}",
            "--do_train", "--do_eval", "--num_train_epochs=6", *COMMON]
    args[-1] = "--label_column=upos"
    assert run_job(args) == 0
    results = _results(out)
    assert results["eval_accuracy"] > 0.9 and "eval_f1" not in results  # POS tags: no entity scores


def test_run_ner_rejects_bad_input_before_training(tiny_model, tmp_path, capsys):
    train = tmp_path / "train.txt"
    _conll(train, 4, 0)
    bad = tmp_path / "bad.txt"
    bad.write_text("good\n", encoding="utf-8")
    base = [f"--pretrained={tiny_model}", f"--output_dir={tmp_path / 'out'}", *COMMON]
    assert run_job([*base, f"--train_file={bad}", "--do_train", "--label_column=1"]) == 2
    assert "bad.txt:1: 1 column" in capsys.readouterr().err
    assert run_job([*base, f"--train_file={train}", "--do_train", "--label_list=O,B-Q"]) == 2
    assert "not in the label list: ['B-N']" in capsys.readouterr().err
    assert run_job([*base, "--do_train"]) == 2
    assert "--train_file is needed" in capsys.readouterr().err
    assert run_job([*base, f"--train_file={train}", "--do_train", "--do_export"]) == 2
    assert "--do_export needs --export_dir" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_run_ner_probes_every_layer(tiny_model, tmp_path, capsys):
    train, dev = tmp_path / "train.txt", tmp_path / "dev.txt"
    _conll(train, 60, 0)
    _conll(dev, 20, 1)
    out = tmp_path / "out"
    base = [f"--pretrained={tiny_model}", f"--train_file={train}", f"--dev_file={dev}", f"--output_dir={out}",
            "--do_train", "--do_eval", "--num_train_epochs=2", *COMMON]
    assert run_job([*base, "--probe_layers=all"]) == 2  # frozen features only
    assert "--adaptation=feature_extraction" in capsys.readouterr().err
    assert run_job([*base, "--adaptation=feature_extraction", "--probe_layers=0,5"]) == 2
    assert "this encoder has layers [0, 1, 2]" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()
    assert run_job([*base, "--adaptation=feature_extraction", "--probe_layers=all"]) == 0
    rows = [line.split("\t") for line in (out / "probe_results.tsv").read_text(encoding="utf-8").splitlines()]
    assert rows[0][:3] == ["layer", "name", "eval_accuracy"] and rows[0][-1] == "eval_loss"
    assert {"eval_f1", "eval_f1_Q", "eval_f1_N"} <= set(rows[0])  # BIO tags: entity scores per layer too
    assert [r[:2] for r in rows[1:]] == [["0", "embeddings"], ["1", "layer_1"], ["2", "layer_2"]]
    assert all(0 <= float(v) <= 1 for r in rows[1:] for v in r[2:-1])
    results = _results(out)
    assert results["global_step"] == 15 and results["best_layer"] in (0, 1, 2)
    assert results["eval_accuracy_layer_1"] == pytest.approx(float(rows[2][2]), abs=1e-6)
    assert (out / "probe_results.png").stat().st_size > 1000 and not (out / "final").exists()
