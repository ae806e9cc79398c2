"""Checkpoint interop: Google TF1, Hugging Face, Keras, Model Garden / TF Hub, keras-hub; the converter CLI."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file

from tfx_transfer import BertEncoder, BertPreprocessor
from tfx_transfer.checkpoints import MODEL_GARDEN, load_checkpoint
from tfx_transfer.checkpoints.infer import infer_config
from tfx_transfer.checkpoints.keras_hub_interop import from_keras_hub, to_keras_hub
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.checkpoints.writers import (save_google_checkpoint, save_hf_checkpoint, save_keras_model,
                                              save_tf_checkpoint)
from tfx_transfer.io_utils import atomic_directory
from tfx_transfer.jobs.convert import main as convert_main
from tfx_transfer.text.casing import case_mismatch

from conftest import TINY
from layer_checks import random_bert_inputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def google_names(num_layers):
    """google-research/bert's variable names for a BertModel, written out (not derived from our tables)."""
    names = {"bert/embeddings/word_embeddings", "bert/embeddings/position_embeddings",
             "bert/embeddings/token_type_embeddings", "bert/embeddings/LayerNorm/gamma",
             "bert/embeddings/LayerNorm/beta", "bert/pooler/dense/kernel", "bert/pooler/dense/bias"}
    for i in range(num_layers):
        p = f"bert/encoder/layer_{i}/"
        for dense in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense",
                      "intermediate/dense", "output/dense"):
            names |= {p + dense + "/kernel", p + dense + "/bias"}
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            names |= {p + norm + "/gamma", p + norm + "/beta"}
    return names


def _vocab(tmp_path, size=60):
    path = tmp_path / "vocab.txt"
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"tok{i}" for i in range(size - 5)]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def _max_diff(a, b, data):
    oa, ob = a(data), b(data)
    return max(float(np.max(np.abs(np.asarray(oa[k]) - np.asarray(ob[k])))) for k in ("sequence_output", "pooled_output"))


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return BertEncoder.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def probe(minilm_dir):
    pre = BertPreprocessor.from_pretrained(minilm_dir, seq_length=48, pad_to_max_length=False)
    return {k: v.numpy() for k, v in pre(["Round trips must be exact.", "Second sentence, longer than the first one."],
                                         ["with a pair", ""]).items()}


# ---------------------------------------------------------------------------------------------- real MiniLM hops
def test_minilm_hf_google_ours_hf_ours_round_trip(minilm_dir, minilm, probe, tmp_path):
    google_dir = save_google_checkpoint(minilm, tmp_path / "google")
    variables = dict(tf.train.list_variables(os.path.join(google_dir, "bert_model.ckpt")))
    assert set(variables) == google_names(6)  # exactly the Google names: nothing more, nothing less
    assert variables["bert/encoder/layer_0/intermediate/dense/kernel"] == [384, 1536]
    assert variables["bert/encoder/layer_3/attention/self/query/kernel"] == [384, 384]
    assert variables["bert/embeddings/word_embeddings"] == [30522, 384]
    assert sorted(os.listdir(google_dir)) == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001",
                                              "bert_model.ckpt.index", "checkpoint", "tokenizer_config.json",
                                              "vocab.txt"]

    from_google = BertEncoder.from_pretrained(google_dir)
    assert from_google.load_report.format == "google_tf1" and from_google.bert_config == minilm.bert_config
    assert _max_diff(minilm, from_google, probe) <= 1e-6

    hf_dir = save_hf_checkpoint(from_google, tmp_path / "hf")
    from_hf = BertEncoder.from_pretrained(hf_dir)
    assert _max_diff(minilm, from_hf, probe) <= 1e-6
    original, written = load_file(f"{minilm_dir}/model.safetensors"), load_file(f"{hf_dir}/model.safetensors")
    assert set(written) == set(original) - {"embeddings.position_ids"}
    assert all(np.array_equal(original[name], written[name]) for name in written)


def test_google_checkpoint_with_heads_and_optimizer_slots(tmp_path):
    source = BertEncoder(**TINY)
    save_google_checkpoint(source, tmp_path / "clean", vocab_file=_vocab(tmp_path))
    reader = tf.train.load_checkpoint(str(tmp_path / "clean" / "bert_model.ckpt"))
    arrays = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    heads = {"cls/predictions/transform/dense/kernel": np.zeros((16, 16), "float32"),
             "cls/predictions/transform/LayerNorm/gamma": np.ones(16, "float32"),
             "cls/predictions/output_bias": np.zeros(60, "float32"),
             "cls/seq_relationship/output_weights": np.zeros((2, 16), "float32"),
             "cls/seq_relationship/output_bias": np.zeros(2, "float32")}
    slots = {name + suffix: np.zeros_like(value) for name, value in arrays.items() for suffix in ("/adam_m", "/adam_v")}
    slots["global_step"] = np.array(1000, "int64")
    directory = tmp_path / "pretraining"
    directory.mkdir()
    save_tf_checkpoint({**arrays, **heads, **slots}, str(directory / "bert_model.ckpt"))
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, directory)
    assert report.format == "google_tf1"
    assert sorted(u.name for u in report.discarded) == sorted(heads)
    assert len(report.ignored) == len(slots) and not report.missing_in_checkpoint
    assert "adam" not in str(report)
    assert _max_diff(source, target, random_bert_inputs(2, 6, 60)) == 0.0


# ---------------------------------------------------------------------------------------------- Model Garden / Hub
def _model_garden_arrays(encoder):
    arrays = MODEL_GARDEN.export({p: np.asarray(v) for p, v in model_variables(encoder).items()}, encoder.bert_config)
    assert arrays["transformer/layer_1/self_attention/query/kernel"].shape == (16, 4, 4)
    assert arrays["transformer/layer_1/self_attention/attention_output/kernel"].shape == (4, 4, 16)
    assert arrays["transformer/layer_0/self_attention/key/bias"].shape == (4, 4)
    return arrays


def test_model_garden_name_based_checkpoint(tmp_path):
    source = BertEncoder(**TINY, hidden_act="gelu_approximate")
    save_tf_checkpoint(_model_garden_arrays(source), str(tmp_path / "ckpt"))
    target = BertEncoder(**TINY, hidden_act="gelu_approximate")
    report = load_checkpoint(target, tmp_path / "ckpt")
    assert report.format == "model_garden" and len(report.loaded) == len(target.weights)
    assert _max_diff(source, target, random_bert_inputs(2, 6, 60)) == 0.0


def test_model_garden_saved_model_like_a_hub_module(tmp_path):
    source = BertEncoder(**TINY, hidden_act="gelu_approximate")
    module = tf.Module()
    module.weights = [tf.Variable(value, name=name) for name, value in _model_garden_arrays(source).items()]
    export = tmp_path / "hub_module"
    tf.saved_model.save(module, str(export))
    (export / "assets").mkdir(exist_ok=True)
    _vocab(export / "assets")
    config = infer_config(str(export))
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.vocab_size, config.max_position_embeddings) == (16, 2, 4, 32, 60, 64)
    target = BertEncoder.from_pretrained(export)  # no config file: architecture read off the variables
    assert target.load_report.format == "model_garden"
    assert _max_diff(source, target, random_bert_inputs(2, 6, 60)) == 0.0


def test_object_based_checkpoint_of_our_model_loads_by_recorded_names(tmp_path):
    """tf.train.Checkpoint(model=<a Keras 3 model>) records each variable's path in its object graph."""
    source = BertEncoder(**TINY)
    prefix = tf.train.Checkpoint(model=source).write(str(tmp_path / "object" / "ckpt"))
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, prefix)
    assert report.format == "keras" and len(report.loaded) == len(target.weights)
    assert _max_diff(source, target, random_bert_inputs(2, 6, 60)) == 0.0
    anonymous = tf.train.Checkpoint(model=tf.Module())
    anonymous.model.kernel = tf.Variable(np.zeros((2, 2), "float32"))  # no name recorded: only an object path
    with pytest.raises(ValueError, match="object-based TF2 checkpoint .tf.train.Checkpoint.; the variable names"):
        load_checkpoint(BertEncoder(**TINY), anonymous.write(str(tmp_path / "anonymous" / "ckpt")))


# ---------------------------------------------------------------------------------------------- keras, keras-hub
def test_keras_format_round_trip(tmp_path):
    source = BertEncoder(**TINY)
    directory = save_keras_model(source, tmp_path / "keras", vocab_file=_vocab(tmp_path))
    assert sorted(os.listdir(directory)) == ["config.json", "model.keras", "tokenizer_config.json", "vocab.txt"]
    target = BertEncoder(**TINY)
    report = load_checkpoint(target, directory)
    assert report.format == "keras" and len(report.loaded) == len(target.weights)
    assert _max_diff(source, BertEncoder.from_pretrained(directory), random_bert_inputs(2, 6, 60)) == 0.0


def test_keras_hub_round_trip(minilm_dir, probe):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone.from_preset(minilm_dir)
    ours = from_keras_hub(backbone)
    assert not ours.load_report.missing_in_checkpoint and not ours.load_report.unused_in_checkpoint
    theirs = backbone({"token_ids": probe["input_word_ids"], "padding_mask": probe["input_mask"],
                       "segment_ids": probe["input_type_ids"]})
    mine = ours(probe)
    mask = probe["input_mask"].astype(bool)
    assert np.max(np.abs(np.asarray(mine["sequence_output"])[mask] - np.asarray(theirs["sequence_output"])[mask])) <= 1e-5
    back = to_keras_hub(ours)
    for a, b in zip(backbone.weights, back.weights):
        assert a.path == b.path and np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.warns(UserWarning, match="computes tanh GELU"):
        to_keras_hub(BertEncoder(**TINY))


# ---------------------------------------------------------------------------------------------- hugging face peers
def test_hf_output_loads_in_transformers(minilm, probe, tmp_path):
    torch = pytest.importorskip("torch", reason="optional [torch] extra not installed")
    transformers = pytest.importorskip("transformers", reason="optional [torch] extra not installed")
    directory = save_hf_checkpoint(minilm, tmp_path / "hf")
    model = transformers.BertModel.from_pretrained(directory).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(probe["input_word_ids"]).long(),
                    attention_mask=torch.tensor(probe["input_mask"]).long(),
                    token_type_ids=torch.tensor(probe["input_type_ids"]).long())
    assert np.max(np.abs(out.pooler_output.numpy() - np.asarray(minilm(probe)["pooled_output"]))) <= 1e-4


# ---------------------------------------------------------------------------------------------- errors and checks
def test_vocab_size_mismatch(tmp_path):
    source = BertEncoder(**TINY)
    directory = save_hf_checkpoint(source, tmp_path / "model", vocab_file=_vocab(tmp_path, 70))
    with pytest.raises(ValueError, match="has 70 tokens but the model's word embeddings have 60 rows"):
        BertEncoder.from_pretrained(directory)
    smaller = save_hf_checkpoint(source, tmp_path / "padded", vocab_file=_vocab(tmp_path, 50))
    with pytest.warns(UserWarning, match="the last 10 rows are unused"):
        BertEncoder.from_pretrained(smaller)


def test_missing_files_and_damaged_checkpoints(tmp_path):
    source = BertEncoder(**TINY)
    directory = save_google_checkpoint(source, tmp_path / "google", vocab_file=_vocab(tmp_path))
    os.remove(os.path.join(directory, "bert_config.json"))
    with pytest.raises(FileNotFoundError, match="no config file .config.json or bert_config.json., and the "
                       "architecture of a google_tf1 checkpoint cannot be read off its weights"):
        BertEncoder.from_pretrained(directory)
    data = os.path.join(directory, "bert_model.ckpt.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="truncated or corrupt|not a readable TensorFlow checkpoint"):
        load_checkpoint(BertEncoder(**TINY), directory)
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        load_checkpoint(BertEncoder(**TINY), tmp_path / "nothing" / "bert_model.ckpt")


def test_case_mismatch_checks():
    uncased = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(200)]
    cased = uncased + [f"Word{i}" for i in range(50)]
    assert case_mismatch(True, uncased) is None and case_mismatch(False, cased) is None
    assert "the vocabulary is cased" in case_mismatch(True, cased)
    assert "the vocabulary is uncased" in case_mismatch(False, uncased)
    assert "cased_L-12_H-768_A-12 is a cased model" in case_mismatch(
        True, uncased, "/models/cased_L-12_H-768_A-12/bert_model.ckpt")
    assert "is an uncased model" in case_mismatch(False, cased, "gs://b/uncased_L-12_H-768_A-12/bert_model.ckpt")


def test_atomic_directory_never_half_writes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old", encoding="utf-8")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        with atomic_directory(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(out, overwrite=True) as tmp:
            open(os.path.join(tmp, "new.txt"), "w").close()
            raise RuntimeError("crash while writing")
    assert os.listdir(out) == ["keep.txt"] and os.listdir(tmp_path) == ["out"]
    with atomic_directory(out, overwrite=True) as tmp:
        open(os.path.join(tmp, "new.txt"), "w").close()
    assert os.listdir(out) == ["new.txt"] and os.listdir(tmp_path) == ["out"]
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError, match="is a file"):
        with atomic_directory(tmp_path / "file"):
            pass


# ---------------------------------------------------------------------------------------------- converter CLI
def test_convert_cli_in_process(tmp_path, capsys):
    source = BertEncoder(**TINY)
    hf_dir = save_hf_checkpoint(source, tmp_path / "hf", vocab_file=_vocab(tmp_path))
    assert convert_main(["convert", f"--input={hf_dir}", f"--output_dir={tmp_path / 'google'}",
                         "--output_format=google"]) == 0
    out = capsys.readouterr().out
    assert "[1/4] input" in out and "[4/4] verified" in out and "max |output difference| = 0" in out
    assert "Parameters discarded from the pretrained model (0)" in out
    assert convert_main(["convert", f"--input={tmp_path / 'google'}", f"--output_dir={tmp_path / 'keras'}",
                         "--output_format=keras"]) == 0
    # Refuses to overwrite, leaves the existing output alone.
    before = sorted(os.listdir(tmp_path / "keras"))
    assert convert_main(["convert", f"--input={hf_dir}", f"--output_dir={tmp_path / 'keras'}",
                         "--output_format=hf"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "keras")) == before
    assert convert_main(["convert", "--output_format=zip", f"--input={hf_dir}", "--output_dir=x"]) == 2
    assert "output_format" in capsys.readouterr().err


def test_convert_carries_the_producers_pretraining_heads(tmp_path, capsys):
    """The converter writes the masked-LM and next-sentence heads in each format's names: transformers'
    BertForPreTraining (hf/pretraining) -> google -> hf reproduces the producer's logits and transformers' own
    tensor names; Model Garden's BertPretrainerV2 (its next-sentence head is not BERT's) -> google keeps the masked
    LM only."""
    from fixture_utils import TOLERANCE, expected, inputs, max_difference, path
    from tfx_transfer.jobs.convert import with_pretraining_heads

    assert convert_main(["convert", f"--input={path('hf/pretraining')}", f"--output_dir={tmp_path / 'google'}",
                         "--output_format=google"]) == 0
    assert "pretraining heads: masked LM and next sentence" in capsys.readouterr().out
    google = set(tf.train.load_checkpoint(str(tmp_path / "google" / "bert_model.ckpt")).get_variable_to_shape_map())
    assert {"cls/predictions/output_bias", "cls/predictions/transform/dense/kernel",
            "cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"} <= google
    assert convert_main(["convert", f"--input={tmp_path / 'google'}", f"--output_dir={tmp_path / 'hf'}",
                         "--output_format=hf"]) == 0
    written, produced = (load_file(os.path.join(d, "model.safetensors")) for d in (tmp_path / "hf",
                                                                                  path("hf/pretraining")))
    assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in produced.items()}
    import json
    assert json.load(open(tmp_path / "hf" / "config.json"))["architectures"] == ["BertForPreTraining"]
    stored = expected("hf/pretraining")
    model = with_pretraining_heads(BertEncoder.from_pretrained(str(tmp_path / "hf")), str(tmp_path / "hf"))
    outputs = model(inputs(stored))
    assert max_difference(outputs["next_sentence"], stored["next_sentence_logits"]) <= TOLERANCE
    assert max_difference(model.masked_lm(outputs["sequence_output"])[:, 1:3], stored["mlm_logits"]) <= TOLERANCE

    assert convert_main(["convert", f"--input={path('model_garden/bert_pretrainer')}",
                         f"--bert_config_file={path('google/pretraining/bert_config.json')}",
                         f"--vocab_file={path('google/pretraining/vocab.txt')}",
                         f"--output_dir={tmp_path / 'from_mg'}", "--output_format=google"]) == 0
    assert "pretraining heads: masked LM\n" in capsys.readouterr().out
    names = set(tf.train.load_checkpoint(str(tmp_path / "from_mg" / "bert_model.ckpt")).get_variable_to_shape_map())
    assert "cls/predictions/output_bias" in names and not any("seq_relationship" in n for n in names)


def test_convert_cli_subprocess_errors_are_one_line(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "tfx_transfer.jobs.convert",
                             f"--input={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'out'}"],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "neither a directory, a checkpoint prefix nor a packaged model" in errors[0]
    assert "Traceback" not in result.stderr


def test_structurally_different_model_from_user_rules(tmp_path):
    """A 1-type, 32-position checkpoint initialises a 2-type, 16-position model: the seeds' "as much as possible"."""
    source = BertEncoder(**dict(TINY, type_vocab_size=1))
    path = save_hf_checkpoint(source, tmp_path / "one_type", vocab_file=_vocab(tmp_path))
    fit = {"rules": [
        {"pattern": r"embeddings\.token_type_embeddings\.weight",
         "target": "embeddings/token_type_embeddings/embeddings", "transforms": ["fit_rows"]},
        {"pattern": r"embeddings\.position_embeddings\.weight",
         "target": "embeddings/position_embeddings/embeddings", "transforms": ["fit_rows"]}]}
    map_file = tmp_path / "map.json"
    map_file.write_text(__import__("json").dumps(fit), encoding="utf-8")
    from tfx_transfer.checkpoints import AssignmentMap

    target = BertEncoder(**dict(TINY, type_vocab_size=2, max_position_embeddings=16))
    with pytest.raises(ValueError, match="Shape mismatch"):
        load_checkpoint(target, path)
    report = load_checkpoint(target, path, assignment_map=AssignmentMap.from_json_file(map_file))
    assert not report.missing_in_checkpoint
    types = np.asarray(model_variables(target)["embeddings/token_type_embeddings/embeddings"])
    np.testing.assert_array_equal(types[0], types[1])
    np.testing.assert_array_equal(
        np.asarray(model_variables(target)["embeddings/position_embeddings/embeddings"]),
        np.asarray(model_variables(source)["embeddings/position_embeddings/embeddings"])[:16])
    data = random_bert_inputs(2, 6, 60)
    data["input_type_ids"][:] = 0  # same inputs as the 1-type model saw: same outputs
    np.testing.assert_allclose(np.asarray(target(data)["pooled_output"]), np.asarray(source(data)["pooled_output"]),
                               atol=1e-6)


def test_tokenizer_warns_on_case_mismatch(minilm_dir):
    from tfx_transfer import BertTokenizer

    with pytest.warns(UserWarning, match="the vocabulary is uncased"):
        BertTokenizer(f"{minilm_dir}/vocab.txt", do_lower_case=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BertTokenizer(f"{minilm_dir}/vocab.txt", do_lower_case=True)
