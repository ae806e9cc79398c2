"""TF Hub both ways: HubEncoder (black box, trainable), BertEncoder.from_hub (unwrapped), hub_modules exports
consumed by tf-keras hub.KerasLayer. Modules made by other tools (Model Garden's export_tfhub, a TF1 Hub module) and
--hub_module_handle on both scripts: test_interop_encoders.py and test_interop_scripts.py."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from fixture_utils import path as fixture_path
from session_loading import session_outputs
from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder
from tfx_transfer.checkpoints import CheckpointMismatchError
from tfx_transfer.encoders import HubEncoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCES = ["Transfer learning with TF Hub.", "A second, somewhat longer sentence for the batch.", ""]


@pytest.fixture(scope="module")
def exported_hub(tmp_path_factory):
    """A model saved by transformers (tests/fixtures/hf/bert_model: tokenizer.json, no vocab.txt) exported through
    the two command lines, with its own tokenizer settings."""
    from hub_modules import export_encoder as encoder_cli, export_preprocessor as preprocessor_cli

    model = fixture_path("hf/bert_model")
    root = tmp_path_factory.mktemp("hub")
    encoder_path, preprocessor_path = str(root / "encoder"), str(root / "preprocessor")
    assert encoder_cli.main(["export_encoder", f"--pretrained={model}", f"--export_path={encoder_path}"]) == 0
    assert preprocessor_cli.main(["export_preprocessor", f"--pretrained={model}", "--seq_length=32",
                                  f"--export_path={preprocessor_path}"]) == 0
    assert encoder_cli.main(["export_encoder", f"--export_path={encoder_path}"]) == 2  # exists: never overwritten
    return BertEncoder.from_pretrained(model), encoder_path, preprocessor_path


def _preprocess(path, texts):
    import tensorflow_text  # noqa: F401

    return {k: v.numpy() for k, v in tf.saved_model.load(path)(tf.constant(texts)).items()}


def test_hub_encoder_and_from_hub_equal_bert_encoder(exported_hub):
    encoder, encoder_path, preprocessor_path = exported_hub
    inputs = _preprocess(preprocessor_path, SENTENCES)
    expected = encoder(inputs)
    hub_encoder = HubEncoder(encoder_path)
    assert hub_encoder.vocab_file.endswith("vocab.txt") and hub_encoder.do_lower_case is True
    for candidate in (hub_encoder, BertEncoder.from_hub(encoder_path)):
        out = candidate(inputs)
        for key in ("sequence_output", "pooled_output"):
            np.testing.assert_allclose(np.asarray(out[key]), np.asarray(expected[key]), atol=1e-5)
    unwrapped = BertEncoder.from_hub(encoder_path)
    assert not unwrapped.load_report.missing_in_checkpoint and unwrapped.pretrained.do_lower_case
    # Its serving_default as TF Serving (a session-based loader) runs it.
    served = session_outputs(encoder_path, "serving_default", inputs)
    np.testing.assert_allclose(served["pooled_output"], np.asarray(expected["pooled_output"]), atol=1e-5)


def test_preprocessor_interface(exported_hub):
    import tensorflow_text  # noqa: F401

    _, _, preprocessor_path = exported_hub
    pre = tf.saved_model.load(preprocessor_path)
    tokens_a = pre.tokenize(tf.constant(["the city"]))
    tokens_b = pre.tokenize(tf.constant(["a year"]))
    assert tokens_a.shape.rank == 3
    packed = pre.bert_pack_inputs([tokens_a, tokens_b], seq_length=tf.constant(10))
    special = {k: int(v) for k, v in pre.tokenize.get_special_tokens_dict().items()}
    ids = packed["input_word_ids"].numpy()[0]
    assert ids[0] == special["start_of_sequence_id"] and list(packed["input_type_ids"].numpy()[0][:7]) == \
        [0, 0, 0, 0, 1, 1, 1]
    assert ids.shape == (10,) and special["vocab_size"] == 1571


def test_fine_tuning_through_a_hub_encoder(exported_hub, tmp_path):
    _, encoder_path, preprocessor_path = exported_hub
    inputs = _preprocess(preprocessor_path, SENTENCES * 2)
    labels = np.array([0, 1, 0, 1, 0, 1])
    for trainable in (True, False):
        hub_encoder = HubEncoder(encoder_path, trainable=trainable)
        model = BertClassifier(hub_encoder, 2)
        before = [np.asarray(v).copy() for v in hub_encoder._module.variables]
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(True))
        model.fit(inputs, labels, epochs=1, batch_size=6, verbose=0)
        changed = sum(not np.array_equal(b, np.asarray(v)) for b, v in zip(before, hub_encoder._module.variables))
        assert (changed > 0) == trainable, (trainable, changed)
    # training=True reaches the dropout inside the module.
    hub_encoder = HubEncoder(encoder_path)
    a = np.asarray(hub_encoder(inputs, training=False)["pooled_output"])
    b = np.asarray(hub_encoder(inputs, training=True)["pooled_output"])
    assert np.abs(a - b).max() > 1e-3
    # .keras round trip of a model holding the Hub encoder.
    path = str(tmp_path / "hub_classifier.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(restored(inputs)), np.asarray(model(inputs)), atol=1e-6)


def test_from_hub_with_adapters_and_a_damaged_module(exported_hub, tmp_path):
    encoder, encoder_path, preprocessor_path = exported_hub
    adapted = BertEncoder.from_hub(encoder_path, adapters=AdapterConfig(size=8, zero_init_up=True))
    inputs = _preprocess(preprocessor_path, SENTENCES)
    np.testing.assert_allclose(np.asarray(adapted(inputs)["pooled_output"]),
                               np.asarray(encoder(inputs)["pooled_output"]), atol=1e-5)
    # A module with Model Garden names that lacks a variable: the report says what could not be mapped. (Modules
    # made by Model Garden's own export_tfhub are tested in test_interop_*.py, on tests/fixtures.)
    from tfx_transfer.checkpoints import MODEL_GARDEN
    from tfx_transfer.checkpoints.loader import model_variables

    arrays = MODEL_GARDEN.export({p: np.asarray(v) for p, v in model_variables(encoder).items()}, encoder.bert_config)
    module = tf.Module()
    module.weights = [tf.Variable(value, name=name) for name, value in arrays.items()]
    module.vocab_file = tf.saved_model.Asset(encoder.pretrained.vocab_file)
    module.do_lower_case = tf.Variable(True)

    class Reusable(tf.Module):
        variables = None

    broken = Reusable()
    broken.variables = [v for i, v in enumerate(module.weights) if i != 3]  # drops embeddings/layer_norm/gamma
    broken.vocab_file, broken.do_lower_case = module.vocab_file, module.do_lower_case
    tf.saved_model.save(broken, str(tmp_path / "broken"))
    with pytest.raises(CheckpointMismatchError, match="not in the checkpoint"):
        BertEncoder.from_hub(str(tmp_path / "broken"), hidden_act="gelu")


def test_bad_handles(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a SavedModel"):
        HubEncoder(str(tmp_path / "empty"))
    module = tf.Module()
    module.v = tf.Variable(1.0)
    module.double = tf.function(lambda x: 2 * x, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other"))
    with pytest.raises(ValueError, match="has no BERT encoder interface .* it offers: signatures"):
        HubEncoder(str(tmp_path / "other"))


def test_tf_keras_hub_keras_layer_consumes_our_exports(exported_hub, tmp_path):
    """Other people's code: tf-keras + hub.KerasLayer(trainable=True), one fine-tuning step, in a fresh process."""
    _, encoder_path, preprocessor_path = exported_hub
    script = f"""
import json, numpy as np, tensorflow as tf, tensorflow_hub as hub, tensorflow_text
import tf_keras
preprocess = hub.load({preprocessor_path!r})
inputs = preprocess(tf.constant(["a good film", "a bad film"]))
layer = hub.KerasLayer({encoder_path!r}, trainable=True)
text_in = {{k: tf_keras.Input(shape=(None,), dtype=tf.int32, name=k) for k in inputs}}
logits = tf_keras.layers.Dense(2)(layer(text_in)["pooled_output"])
model = tf_keras.Model(text_in, logits)
model.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
              loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
before = [v.numpy().copy() for v in layer.trainable_variables]
model.fit(dict(inputs), np.array([1, 0]), epochs=1, verbose=0)
changed = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, layer.trainable_variables))
print(json.dumps({{"trainable": len(layer.trainable_variables), "changed": changed}}))
"""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["trainable"] == 39 and report["changed"] > 0
