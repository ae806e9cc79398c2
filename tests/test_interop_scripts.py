"""The scripts on other tools' files (tests/fixtures): a Model Garden TF Hub module with adapters, and models
fine-tuned by google-research/bert and transformers evaluated, predicted and exported without retraining, their
probabilities and logits reproduced from raw text (in a fresh process for the export)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from fixture_utils import MNLI_LABELS, PAIRS, SQUAD, TOLERANCE, expected, max_difference, path, softmax
from tfx_transfer.jobs import classifier, ner, squad

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
if "task_name" not in FLAGS:
    classifier.define_flags()
if "predict_file" not in FLAGS:
    squad.define_flags()
if "word_column" not in FLAGS:
    ner.define_flags()

GOOGLE = ["--init_checkpoint=" + path("google/run_classifier/model.ckpt-2"),
          "--bert_config_file=" + path("google/pretraining/bert_config.json"),
          "--vocab_file=" + path("google/pretraining/vocab.txt")]
SMALL = ["--max_seq_length=32", "--eval_batch_size=2", "--predict_batch_size=2", "--run_eagerly", "--verbosity=0"]


def run(job, argv):
    FLAGS.unparse_flags()
    FLAGS([f"{job.__name__}.py"] + argv)
    return job.main([f"{job.__name__}.py"])


def _pairs_tsv(tmp_path, labels=(1, 0, 2)):
    path_ = tmp_path / "pairs.tsv"
    with open(path_, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["a", "b", "label"])
        for (a, b), label in zip(PAIRS, labels):
            writer.writerow([a, b, MNLI_LABELS[label]])
    return str(path_)


def _probabilities(out):
    rows = (out / "test_results.tsv").read_text(encoding="utf-8").strip().splitlines()
    return np.array([[float(x) for x in row.split("\t")] for row in rows])


def test_google_fine_tuned_classifier_predicts_without_training(tmp_path, absl_log):
    data = _pairs_tsv(tmp_path)
    out = tmp_path / "out"
    assert run(classifier, ["--task_name=tsv", f"--dev_file={data}", f"--test_file={data}", "--text_a_column=a",
                            "--text_b_column=b", "--label_column=label", "--label_list=" + ",".join(MNLI_LABELS),
                            f"--output_dir={out}", "--do_eval", "--do_predict", *GOOGLE, *SMALL]) == 0
    stored = expected("google/run_classifier")
    assert max_difference(_probabilities(out), stored["probabilities"]) <= TOLERANCE
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().strip().splitlines())
    predicted = stored["logits"].argmax(1)
    assert float(results["eval_accuracy"]) == pytest.approx(np.mean(predicted == np.array([1, 0, 2])))
    assert "The task head comes from the checkpoint" in absl_log.text
    assert "newly initialised" not in absl_log.text


def test_hugging_face_classifier_labels_come_from_id2label_and_are_reordered(tmp_path, absl_log):
    data = _pairs_tsv(tmp_path)
    common = ["--task_name=tsv", f"--test_file={data}", "--text_a_column=a", "--text_b_column=b",
              "--label_column=label", "--init_checkpoint=" + path("hf/sequence_classification"), "--do_predict", *SMALL]
    assert run(classifier, common + [f"--output_dir={tmp_path / 'theirs'}"]) == 0  # no --label_list: id2label
    stored = softmax(expected("hf/sequence_classification")["logits"])
    assert max_difference(_probabilities(tmp_path / "theirs"), stored) <= TOLERANCE
    assert "labels ['contradiction', 'entailment', 'neutral'] from the checkpoint" in absl_log.text
    order = ["neutral", "contradiction", "entailment"]
    assert run(classifier, common + [f"--output_dir={tmp_path / 'ours'}", "--label_list=" + ",".join(order)]) == 0
    assert max_difference(_probabilities(tmp_path / "ours"), stored[:, [2, 0, 1]]) <= TOLERANCE
    assert "Reordered the checkpoint's head" in absl_log.text
    submission = (tmp_path / "ours" / "tsv.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in submission] == [order[i] for i in stored[:, [2, 0, 1]].argmax(1)]


def _fresh_process(script, tmp_path):
    (tmp_path / "script.py").write_text(script, encoding="utf-8")
    result = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_hugging_face_classifier_exported_serves_its_probabilities_from_raw_text(tmp_path):
    """--do_export of a transformers-fine-tuned model: no data, no training; TF Serving SavedModel, raw text in."""
    base = tmp_path / "models"
    assert run(classifier, ["--task_name=MNLI", "--init_checkpoint=" + path("hf/sequence_classification"),
                            "--do_export", f"--export_dir={base}", f"--output_dir={tmp_path / 'out'}",
                            "--max_seq_length=32"]) == 0
    served = _fresh_process(f"""
import json, tensorflow as tf, tensorflow_text
serve = tf.saved_model.load({str(base / "1")!r}).signatures["serving_default"]
out = serve(text=tf.constant({[a for a, _ in PAIRS]!r}), text_b=tf.constant({[b for _, b in PAIRS]!r}))
print(json.dumps({{"probabilities": out["probabilities"].numpy().tolist(),
                   "label": [x.decode() for x in out["label"].numpy()]}}))
""", tmp_path)
    stored = softmax(expected("hf/sequence_classification")["logits"])
    assert max_difference(np.array(served["probabilities"]), stored) <= TOLERANCE
    assert served["label"] == [MNLI_LABELS[i] for i in stored.argmax(1)]


def test_question_answering_model_from_hugging_face_predicts_and_exports(tmp_path, absl_log):
    dev = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": f"q{i}", "question": question, "answers": []}]}]}
        for i, (question, context) in enumerate(SQUAD)]}
    predict_file = tmp_path / "dev.json"
    predict_file.write_text(json.dumps(dev), encoding="utf-8")
    base = tmp_path / "models"
    assert run(squad, ["--init_checkpoint=" + path("hf/question_answering"), f"--predict_file={predict_file}",
                       "--do_predict", "--do_export", f"--export_dir={base}", f"--output_dir={tmp_path / 'out'}",
                       "--max_seq_length=64", "--max_query_length=16", "--doc_stride=16", "--predict_batch_size=2",
                       "--run_eagerly", "--verbosity=0"]) == 0
    assert "The task head comes from the checkpoint" in absl_log.text
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert set(predictions) == {"q0", "q1"} and all(predictions.values())
    served = _fresh_process(f"""
import json, tensorflow as tf, tensorflow_text
serve = tf.saved_model.load({str(base / "1")!r}).signatures["serving_default"]
out = serve(question=tf.constant({[q for q, _ in SQUAD]!r}), context=tf.constant({[c for _, c in SQUAD]!r}))
print(json.dumps({{k: out[k].numpy().tolist() for k in ("start_logits", "end_logits")}}))
""", tmp_path)
    stored = expected("hf/question_answering")
    for key in ("start_logits", "end_logits"):
        assert max_difference(np.array(served[key]), stored[key], stored["input_mask"]) <= TOLERANCE, key


def test_model_garden_hub_module_in_both_scripts(tmp_path, capsys):
    """--hub_module_handle=<export_tfhub output>: run_classifier.py with the module as a black box
    (HubEncoder, fine-tuned), run_squad.py with it unwrapped and adapters, and the flag conflict."""
    module = "--hub_module_handle=" + path("model_garden/hub_encoder")
    out = tmp_path / "black_box"
    assert run(classifier, ["--task_name=demo", "--do_train", "--do_eval", module, "--adaptation=full",
                            f"--output_dir={out}", "--max_train_examples=16", "--train_batch_size=8",
                            "--num_train_epochs=1", *SMALL]) == 0
    assert "eval_accuracy" in (out / "eval_results.txt").read_text()
    assert run(classifier, ["--task_name=demo", "--do_train", module, "--init_checkpoint=x",
                            f"--output_dir={tmp_path / 'c'}"]) == 2
    assert "pass only one" in capsys.readouterr().err
    context, question = SQUAD[0][1], SQUAD[0][0]
    data = {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": question, "answers": [{"text": "the lazy dog", "answer_start": context.index("the lazy")}]}]}]}]}
    squad_file = tmp_path / "squad.json"
    squad_file.write_text(json.dumps(data), encoding="utf-8")
    assert run(squad, [f"--train_file={squad_file}", f"--predict_file={squad_file}", "--do_train", "--do_predict",
                       "--eval", module, "--adaptation=adapters", "--adapter_size=4", f"--output_dir={tmp_path / 'qa'}",
                       "--max_seq_length=48", "--max_query_length=16", "--doc_stride=16", "--train_batch_size=2",
                       "--num_train_epochs=1", "--run_eagerly"]) == 0
    assert (tmp_path / "qa" / "predictions.json").is_file()


def test_model_garden_hub_module_with_adapters_trains_and_exports(tmp_path):
    """The command the issue reported broken: --hub_module_handle=<export_tfhub output> --adaptation=adapters."""
    out, base = tmp_path / "out", tmp_path / "models"
    assert run(classifier, ["--task_name=demo", "--do_train", "--do_eval",
                            "--hub_module_handle=" + path("model_garden/hub_encoder"), "--adaptation=adapters",
                            "--adapter_size=4", f"--output_dir={out}", f"--export_dir={base}",
                            "--max_train_examples=16", "--train_batch_size=8", "--num_train_epochs=1",
                            "--learning_rate=1e-3", *SMALL]) == 0
    assert (out / "eval_results.txt").is_file() and (out / "final" / "adapter.safetensors").is_file()
    assert (base / "1" / "saved_model.pb").is_file()


def test_model_garden_hub_module_in_run_ner(tmp_path):
    """run_ner.py --hub_module_handle=<export_tfhub output>: fine-tuned as a black box, unwrapped with adapters, and
    unwrapped for probing (its embeddings and each layer; a black box gives neither)."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
    rows = []
    for i in range(24):
        sentence = [words[(i + j) % len(words)] for j in range(3 + i % 4)]
        rows += [f"{w} {'ADJ' if w in ('quick', 'brown', 'lazy') else 'X'}" for w in sentence] + [""]
    data = tmp_path / "tags.txt"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    common = ["--hub_module_handle=" + path("model_garden/hub_encoder"), f"--train_file={data}", f"--dev_file={data}",
              "--do_train", "--do_eval", "--label_column=-1", "--train_batch_size=8", "--num_train_epochs=1",
              *SMALL]
    for name, extra in (("black_box", ["--adaptation=full"]),
                        ("adapters", ["--adaptation=adapters", "--adapter_size=4", "--learning_rate=1e-3"]),
                        ("probes", ["--adaptation=feature_extraction", "--probe_layers=all", "--learning_rate=1e-2"])):
        out = tmp_path / name
        assert run(ner, [*common, *extra, f"--output_dir={out}"]) == 0, name
        results = (out / "eval_results.txt").read_text()
        if name == "probes":
            layers = [line.split("\t")[1] for line in (out / "probe_results.tsv").read_text().splitlines()[1:]]
            assert layers[0] == "embeddings" and len(layers) >= 3 and "eval_accuracy_layer_0" in results
        else:
            assert "eval_accuracy" in results and (out / "final" / "task.json").is_file()
