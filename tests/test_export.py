"""TF Serving exports: raw-text signatures verified in a fresh process, warmup records, versions, atomicity."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, BertPreprocessor, BertTokenizer
from tfx_transfer.export import export_for_serving
from tfx_transfer.models import BertSpanLabeler

from conftest import TINY_ENCODER as TINY
from session_loading import functions_kept_whole, session_outputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["a good movie", "", "the plot was dull and the acting bad", "x" * 10000, "fun " * 3000]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


def _fresh_process(script, data, tmp_path):
    """Runs `script` in a new Python process with DATA (JSON-able) loaded and `session_outputs` (a signature run as
    TF Serving loads it: tests/session_loading.py) imported; returns the JSON it prints last."""
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    prelude = (f"import json, sys\nsys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
               "from session_loading import session_outputs\n"
               f"DATA = json.load(open({str(tmp_path / 'data.json')!r}))\n")
    (tmp_path / "script.py").write_text(prelude + script, encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True, text=True, env=env,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _keras_probabilities(model, tokenizer, texts, texts_b=None, seq=48):
    pre = BertPreprocessor(tokenizer, seq_length=seq, pad_to_max_length=False)
    logits = np.asarray(model(pre(texts, texts_b), training=False))
    return tf.nn.softmax(logits).numpy()


def test_classifier_export_matches_keras_in_a_fresh_process(tokenizer, tmp_path):
    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, adapters=AdapterConfig(size=4), **TINY), 3)
    path = export_for_serving(model, tmp_path / "models", tokenizer, labels=["neg", "neutral", "pos"],
                              max_seq_length=48)
    assert path.endswith(os.sep + "1") and os.path.isfile(os.path.join(path, "assets", "vocab.txt"))
    assert len(functions_kept_whole(path)) == 1  # the model's graph, called by both signatures
    batch = (TEXTS * 13)[:64]
    served = _fresh_process("""
import tensorflow as tf, tensorflow_text
m = tf.saved_model.load(DATA["path"])
f = m.signatures["serving_default"]
out = {}
for name, texts in (("one", DATA["texts"][:1]), ("five", DATA["texts"]), ("many", DATA["batch"])):
    r = f(text=tf.constant(texts))
    out[name] = {k: v.numpy().tolist() if v.dtype != tf.string else [x.decode() for x in v.numpy()]
                 for k, v in r.items()}
session = session_outputs(DATA["path"], "serving_default", {"text": DATA["texts"]})
out["session"] = {"probabilities": session["probabilities"].tolist(), "label": [x.decode() for x in session["label"]]}
print(json.dumps(out))
""", {"path": path, "texts": TEXTS, "batch": batch}, tmp_path)
    expected = _keras_probabilities(model, tokenizer, TEXTS)
    np.testing.assert_allclose(np.asarray(served["five"]["probabilities"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(served["session"]["probabilities"]), expected, atol=1e-5)
    assert served["session"]["label"] == served["five"]["label"]
    assert served["five"]["label"] == [["neg", "neutral", "pos"][i] for i in expected.argmax(1)]
    assert len(served["one"]["label"]) == 1 and len(served["many"]["label_id"]) == 64
    np.testing.assert_allclose(np.asarray(served["many"]["probabilities"])[:5], expected, atol=1e-5)


def test_pair_and_regression_signatures(tokenizer, tmp_path):
    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY), 1)
    path = export_for_serving(model, tmp_path / "sts", tokenizer, labels=None, max_seq_length=48, pairs=True,
                              warmup=False)
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"text", "text_b"}
    out = signature(text=tf.constant(["a cat", "a dog"]), text_b=tf.constant(["a kitten", "a car"]))
    pre = BertPreprocessor(tokenizer, seq_length=48, pad_to_max_length=False)
    expected = np.asarray(model(pre(["a cat", "a dog"], ["a kitten", "a car"])))[:, 0]
    np.testing.assert_allclose(out["score"].numpy(), expected, atol=1e-5)
    assert not os.path.exists(os.path.join(path, "assets.extra"))


def test_bad_serving_inputs_get_clear_errors_and_empty_batches_work(tokenizer, tmp_path):
    """Catalogue rows for serving (tests/test_reliability.py): non-string input, wrong rank, mismatched pair batch,
    empty batch. TF Serving returns these messages to the client as INVALID_ARGUMENT."""
    pairs = export_for_serving(BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY), 2),
                               tmp_path / "pairs", tokenizer, labels=["no", "yes"], max_seq_length=32, pairs=True,
                               warmup=False)
    qa = export_for_serving(BertSpanLabeler(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY)), tmp_path / "qa",
                            tokenizer, max_seq_length=48, task="squad", doc_stride=16, max_query_length=16,
                            warmup=False)
    classify = tf.saved_model.load(pairs).signatures["serving_default"]
    answer = tf.saved_model.load(qa).signatures["serving_default"]
    empty = tf.constant([], tf.string)
    out = classify(text=empty, text_b=empty)
    assert out["probabilities"].shape == (0, 2) and out["label"].shape == (0,)
    out = answer(question=empty, context=empty)
    assert out["answer_text"].shape == (0,) and out["score"].shape == (0,)
    for call, message in [
        (lambda: classify(text=tf.constant([1, 2]), text_b=tf.constant(["a", "b"])), "expected to be a string tensor"),
        (lambda: classify(text=tf.constant([["a", "b"]]), text_b=tf.constant(["a"])),
         "Shape of tensor text \\[1,2\\] is not compatible with expected shape \\[\\?\\]"),
        (lambda: classify(text=tf.constant(["a", "b"]), text_b=tf.constant(["a"])),
         "inputs text and text_b must have the same batch size"),
        (lambda: answer(question=tf.constant(["who?"]), context=tf.constant(["a", "b"])),
         "inputs question and context must have the same batch size"),
        (lambda: answer(question=tf.constant("who?"), context=tf.constant(["x"])),
         "Shape of tensor question \\[\\] is not compatible"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call()


def test_warmup_records_replay(tokenizer, tmp_path):
    serving_apis = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY), 2)
    path = export_for_serving(model, tmp_path / "m", tokenizer, labels=["a", "b"], max_seq_length=32)
    loaded = tf.saved_model.load(path)
    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")))
    assert records
    for record in records:
        log = serving_apis.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant([x.decode() if isinstance(x, bytes) else x for x in v]) for k, v in inputs.items()})
        assert out["label"].shape[0] == len(inputs["text"])
        # TF Serving replays them through its session-based loader
        served = session_outputs(path, request.model_spec.signature_name, inputs)
        np.testing.assert_allclose(served["probabilities"], out["probabilities"].numpy(), atol=1e-6)


def test_versions_and_atomicity(tokenizer, tmp_path, monkeypatch):
    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY), 2)
    base = tmp_path / "versions"
    first = export_for_serving(model, base, tokenizer, labels=["a", "b"], max_seq_length=32, warmup=False)
    second = export_for_serving(model, base, tokenizer, labels=["a", "b"], max_seq_length=32, warmup=False)
    assert (os.path.basename(first), os.path.basename(second)) == ("1", "2")
    with pytest.raises(FileExistsError, match="Version 2 already exists"):
        export_for_serving(model, base, tokenizer, labels=["a", "b"], max_seq_length=32, version=2)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_for_serving(model, base, tokenizer, labels=["a", "b"], max_seq_length=32)
    assert sorted(os.listdir(base)) == ["1", "2"]  # no version 3, no temporary directory left


@pytest.mark.parametrize("kind, trained", [("lora", "lora_b"), ("ia3", "_ia3/scale")])
def test_mergeable_models_are_merged_for_serving(kind, trained, tokenizer, tmp_path):
    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, adapters=AdapterConfig(kind=kind), **TINY), 2)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if variable.path.endswith(trained):  # as if trained: LoRA's B away from 0, (IA)^3 vectors away from 1
            variable.assign(np.asarray(variable) + rng.uniform(0.05, 0.5, variable.shape).astype("float32"))
    path = export_for_serving(model, tmp_path / kind, tokenizer, labels=["a", "b"], max_seq_length=32,
                              warmup=False)
    from tfx_transfer.checkpoints.saved_models import read_saved_model

    assert not any(kind in name for name in read_saved_model(path).arrays)
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](text=tf.constant(TEXTS[:3]))
    np.testing.assert_allclose(out["probabilities"].numpy(), _keras_probabilities(model, tokenizer, TEXTS[:3], seq=32),
                               atol=1e-5)


def test_prefix_tuned_model_serves_with_its_prefixes(tokenizer, tmp_path):
    """Prefix tuning cannot be merged: the export keeps the prefixes (the reparameterisation's output) as weights."""
    config = AdapterConfig(kind="prefix", prefix_length=4, prefix_projection=8)
    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, adapters=config, **TINY), 2)
    path = export_for_serving(model, tmp_path / "prefix", tokenizer, labels=["a", "b"], max_seq_length=32,
                              warmup=False)
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](text=tf.constant(TEXTS[:3]))
    np.testing.assert_allclose(out["probabilities"].numpy(), _keras_probabilities(model, tokenizer, TEXTS[:3], seq=32),
                               atol=1e-5)


def test_squad_export_answers_from_raw_text_in_a_fresh_process(tokenizer, tmp_path):
    model = BertSpanLabeler(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY))
    path = export_for_serving(model, tmp_path / "qa", tokenizer, max_seq_length=48, task="squad", doc_stride=16,
                              max_query_length=16)
    assert len(functions_kept_whole(path)) == 1
    contexts = ["The Normans gave their name to Normandy, a region in France.",
                "Short.", "", "word " * 2500]
    questions = ["Who gave a name to Normandy?", "What?", "Empty?", "Long?"]
    served = _fresh_process("""
import tensorflow as tf, tensorflow_text
m = tf.saved_model.load(DATA["path"])
r = m.signatures["serving_default"](question=tf.constant(DATA["q"]), context=tf.constant(DATA["c"]))
session = session_outputs(DATA["path"], "serving_default", {"question": DATA["q"], "context": DATA["c"]})
print(json.dumps({"answers": [x.decode() for x in r["answer_text"].numpy()], "scores": r["score"].numpy().tolist(),
                  "shape": list(r["start_logits"].shape),
                  "session": {"answers": [x.decode() for x in session["answer_text"]],
                              "scores": session["score"].tolist()}}))
""", {"path": path, "q": questions, "c": contexts}, tmp_path)
    answers = served["answers"]
    assert served["session"]["answers"] == answers  # as TF Serving loads it
    np.testing.assert_allclose(served["session"]["scores"], served["scores"], atol=1e-5)
    assert answers[2] == "" and served["shape"][0] == 4
    for answer, context in zip(answers, contexts):
        assert answer in context  # an original substring
    # The in-graph best span equals a brute-force search over the same window in Keras.
    pre = BertPreprocessor(tokenizer, seq_length=48, pad_to_max_length=False)
    inputs = pre(questions[:1], contexts[:1])
    out = model(inputs, training=False)
    starts, ends = np.asarray(out["start_logits"])[0], np.asarray(out["end_logits"])[0]
    doc = np.where(np.asarray(inputs["input_type_ids"])[0] == 1)[0][:-1]  # doc pieces, without the final [SEP]
    best = max(((s, e) for s in doc for e in doc if 0 <= e - s < 30), key=lambda p: starts[p[0]] + ends[p[1]])
    assert served["scores"][0] == pytest.approx(starts[best[0]] + ends[best[1]], abs=1e-4)


def test_bfloat16_serving_keeps_the_weights_and_float32_outputs(tokenizer, tmp_path):
    """--serving_dtype=bfloat16: the encoder's matmuls in bfloat16 (Keras mixed_bfloat16), the same float32 weights,
    float32 probabilities within bfloat16's precision of the float32 export's."""
    from tfx_transfer.export.serving import computing_in

    model = BertClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, adapters=AdapterConfig(size=4), **TINY), 2)
    fast = computing_in(model, "bfloat16")
    assert fast.encoder.get_config()["dtype"] == "mixed_bfloat16" and all(v.dtype == "float32" for v in fast.weights)
    path = export_for_serving(model, tmp_path / "bf16", tokenizer, labels=["neg", "pos"], max_seq_length=48,
                              serving_dtype="bfloat16", warmup=False)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(TEXTS[:3]))
    assert served["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(served["probabilities"].numpy(), _keras_probabilities(model, tokenizer, TEXTS[:3]),
                               atol=2e-2)
    with pytest.raises(ValueError, match="serving_dtype='float16'"):
        computing_in(model, "float16")
