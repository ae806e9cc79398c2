"""Encoders from files the genuine producers made (tests/fixtures): each loads strictly with an exact load report,
and our outputs match the producer's stored outputs to 1e-4. The fixtures were written by google-research/bert,
tensorflow_hub's TF1 API, Model Garden's own tools, transformers and keras-hub in their own virtualenvs
(tests/fixtures/regenerate.sh); nothing here was written by tfx_transfer."""

import hashlib
import os
import re

import numpy as np
import pytest

from fixture_utils import FIXTURES, TOLERANCE, encoder_differences, expected, inputs, max_difference, path
from tfx_transfer import BertEncoder
from tfx_transfer.checkpoints import load_checkpoint

ENCODER_VARIABLES = 39  # 2 layers x 16 + 5 embedding + 2 pooler tensors
# (fixture, format, GELU of the producer, checkpoint tensors discarded by name)
ENCODERS = [
    ("google/pretraining", "google_tf1", "gelu_approximate",
     {"cls/predictions/output_bias", "cls/predictions/transform/LayerNorm/beta",
      "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/dense/bias",
      "cls/predictions/transform/dense/kernel", "cls/seq_relationship/output_bias",
      "cls/seq_relationship/output_weights"}),
    ("google/tf1_hub_module", "google_tf1", "gelu_approximate", set()),
    ("model_garden/hub_encoder", "model_garden", "gelu_approximate", set()),
    ("hf/bert_model", "hf_safetensors", "gelu", set()),
    ("hf/sharded", "hf_safetensors", "gelu", set()),
    ("hf/masked_lm", "hf_safetensors", "gelu",
     {"cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias", "cls.predictions.transform.LayerNorm.weight",
      "cls.predictions.transform.dense.bias", "cls.predictions.transform.dense.weight"}),
    ("hf/token_classification", "hf_safetensors", "gelu", {"classifier.weight", "classifier.bias"}),
    ("keras_hub/bert_backbone", "keras_hub_preset", "gelu_approximate", set()),
]


def test_fixtures_are_the_producers_bytes():
    """SHA256SUMS was written by regenerate.sh right after the producers ran: nothing was edited since."""
    lines = (FIXTURES / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 100
    for line in lines:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("fixture,fmt,gelu,discarded", ENCODERS, ids=[e[0] for e in ENCODERS])
def test_encoder_from_the_producers_files(fixture, fmt, gelu, discarded):
    encoder = BertEncoder.from_pretrained(path(fixture))  # strict
    report = encoder.load_report
    assert report.format == fmt and encoder.bert_config.hidden_act == gelu
    config = encoder.bert_config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == \
        (32, 2, 4, 128)
    assert {u.name for u in report.unused_in_checkpoint} == discarded
    assert all(u.reason == "discarded" for u in report.unused_in_checkpoint)
    newly = {m.name for m in report.missing_in_checkpoint}
    no_pooler = fixture in ("hf/masked_lm", "hf/token_classification")  # BertModel(add_pooling_layer=False)
    assert newly == ({"pooler/dense/kernel", "pooler/dense/bias"} if no_pooler else set())
    assert len(report.loaded) == ENCODER_VARIABLES - len(newly)
    stored = expected(fixture)
    differences = encoder_differences(encoder, stored)
    if fixture == "hf/token_classification":  # the producer stored tag logits: apply its head to our sequence
        from safetensors.numpy import load_file

        head = load_file(path(fixture, "model.safetensors"))
        x = inputs(stored)
        logits = np.asarray(encoder(x)["sequence_output"]) @ head["classifier.weight"].T + head["classifier.bias"]
        differences["tag_logits"] = max_difference(logits, stored["logits"], x["input_mask"])
    assert max(differences.values()) <= TOLERANCE, differences


@pytest.mark.parametrize("fixture", ["google/pretraining", "hf/bert_model", "keras_hub/bert_backbone"])
def test_the_fixtures_tell_the_two_gelus_apart(fixture):
    """With the other GELU the outputs miss the producer's by more than twice the tolerance (measured: 2.9e-4,
    8.7e-4, 8.3e-4), with the right one by far less than it: the checks above can fail."""
    encoder = BertEncoder.from_pretrained(path(fixture))
    other = "gelu" if encoder.bert_config.hidden_act == "gelu_approximate" else "gelu_approximate"
    wrong = BertEncoder.from_pretrained(path(fixture), hidden_act=other)
    assert max(encoder_differences(encoder, expected(fixture)).values()) < TOLERANCE / 10
    assert max(encoder_differences(wrong, expected(fixture)).values()) > 2 * TOLERANCE


def test_google_checkpoint_slots_and_counters_are_ignored():
    report = BertEncoder.from_pretrained(path("google/pretraining")).load_report
    assert len(report.ignored) == 2 * (ENCODER_VARIABLES + 7) + 1  # adam_m / adam_v of every variable, global_step
    assert all(re.fullmatch(r".*/adam_[mv]|global_step", name) for name in report.ignored)
    assert "adam" not in str(report).split("ignored")[1]


def test_model_garden_name_based_checkpoint_without_config():
    """tf1_bert_checkpoint_converter_lib's output: no config file; the architecture is read off the shapes."""
    encoder = BertEncoder.from_pretrained(path("model_garden/name_based"),
                                          vocab_file=path("google/pretraining/vocab.txt"))
    report = encoder.load_report
    assert encoder.pretrained.config_file is None and report.format == "model_garden"
    assert encoder.bert_config.num_attention_heads == 4 and not report.missing_in_checkpoint
    # Model Garden's converter renames Google's masked-LM head to bert/cls/predictions/... and its next-sentence
    # head to predictions/transform/logits (the name of its span heads, too): all recognised as pretraining heads.
    assert {u.name for u in report.unused_in_checkpoint} == {
        "bert/cls/predictions/output_bias/bias", "bert/cls/predictions/transform/LayerNorm/beta",
        "bert/cls/predictions/transform/LayerNorm/gamma", "bert/cls/predictions/transform/dense/bias",
        "bert/cls/predictions/transform/dense/kernel", "predictions/transform/logits/bias",
        "predictions/transform/logits/kernel"}
    assert report.ignored == ["global_step"]
    same_weights = expected("google/pretraining")  # converted from google/pretraining: same numbers
    assert max(encoder_differences(encoder, same_weights).values()) <= TOLERANCE


def test_model_garden_object_based_checkpoint():
    """tf2_bert_encoder_checkpoint_converter's tf.train.Checkpoint(encoder=...): read by the names its object
    graph records; save_counter is bookkeeping."""
    encoder = BertEncoder.from_pretrained(path("model_garden/tf2_encoder_checkpoint"),
                                          vocab_file=path("google/pretraining/vocab.txt"))
    report = encoder.load_report
    assert report.format == "model_garden" and len(report.loaded) == ENCODER_VARIABLES
    assert report.ignored == ["save_counter/.ATTRIBUTES/VARIABLE_VALUE"] and not report.unused_in_checkpoint
    assert {item.source for item in report.loaded} >= {"transformer/layer_1/self_attention/query/kernel",
                                                        "pooler_transform/kernel", "word_embeddings/embeddings"}
    assert max(encoder_differences(encoder, expected("model_garden/tf2_encoder_checkpoint")).values()) <= TOLERANCE


def test_model_garden_hub_module_bookkeeping_and_vocab():
    """export_tfhub adds an unnamed `do_lower_case` variable: recognised by identity, never 'unmatched'."""
    from tfx_transfer.checkpoints.saved_models import read_saved_model

    contents = read_saved_model(path("model_garden/hub_encoder"))
    assert contents.bookkeeping == (("Variable", "do_lower_case"),) and "Variable" not in contents.arrays
    encoder = BertEncoder.from_hub(path("model_garden/hub_encoder"))
    assert encoder.pretrained.do_lower_case is True
    assert encoder.pretrained.vocab_file.endswith("hub_encoder/assets/vocab.txt")
    assert not encoder.load_report.unused_in_checkpoint and not encoder.load_report.ignored


@pytest.mark.parametrize("fixture", ["model_garden/hub_encoder", "google/tf1_hub_module"])
def test_black_box_hub_encoder_on_the_producers_modules(fixture):
    from tfx_transfer.encoders import HubEncoder

    hub_encoder = HubEncoder(path(fixture))
    differences = encoder_differences(hub_encoder, expected(fixture))
    assert max(differences.values()) <= TOLERANCE, differences


def test_tf1_hub_module_heads_are_found_from_its_own_outputs():
    """google-research/bert names record no head count ([H, H] kernels); the module's `tokens` signature decides
    (4 heads of 8 here, not the usual 64-wide heads), and `tokenization_info` gives vocabulary and casing."""
    encoder = BertEncoder.from_pretrained(path("google/tf1_hub_module"))
    assert encoder.bert_config.num_attention_heads == 4 and encoder.pretrained.config_file is None
    assert encoder.pretrained.vocab_file.endswith("tf1_hub_module/assets/uncased_vocab.txt")
    assert encoder.pretrained.do_lower_case is True and encoder.pretrained.tokenizer.max_chars_per_word == 200


def test_keras_hub_preset_tokenizer_settings():
    settings = BertEncoder.from_pretrained(path("keras_hub/bert_backbone")).pretrained.tokenizer
    assert settings.vocab_file.endswith("assets/tokenizer/vocabulary.txt")
    assert settings.do_lower_case is True and settings.strip_accents is False  # keras-hub's BertTokenizer config


def test_pickled_pytorch_checkpoint_is_refused_unopened(monkeypatch):
    import builtins
    import io

    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        assert not str(file).endswith("pytorch_model.bin"), "the pickle was opened"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)
    for call in (lambda: BertEncoder.from_pretrained(path("hf/pytorch_bin")),
                 lambda: load_checkpoint(BertEncoder(vocab_size=16, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=16,
                                                     max_position_embeddings=16), path("hf/pytorch_bin"))):
        with pytest.raises(ValueError, match="pytorch_model.bin is a pickled PyTorch checkpoint; tfx_transfer never "
                                             "unpickles") as error:
            call()
        assert "save_pretrained" in str(error.value) and "weights_only=True" in str(error.value)


def test_estimator_checkpoint_file_with_a_stale_absolute_path():
    """google-research/bert's Estimator writes `checkpoint` with absolute paths; the fixture's point to an output
    directory that does not exist here (regenerate.sh's throw-away one, renamed to /tmp/bert_output/). The
    directory's own newest model.ckpt-<step> is read instead."""
    from tfx_transfer.checkpoints.formats import tf_checkpoint_prefix

    checkpoint_file = (FIXTURES / "google" / "run_classifier" / "checkpoint").read_text(encoding="utf-8")
    recorded = checkpoint_file.splitlines()[0].split('"')[1]
    assert os.path.isabs(recorded) and not os.path.exists(recorded + ".index")  # absolute, and stale
    assert tf_checkpoint_prefix(path("google/run_classifier")).endswith("run_classifier/model.ckpt-2")
