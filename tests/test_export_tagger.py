"""The token-classification TF Serving export (export/tagger_module.py): raw text in, a label per word out.

The served words, labels and probabilities are compared with the training path's own functions (data/tagging.py's
windows and first-sub-token alignment on the Keras model), the words with google-research/bert's BasicTokenizer
rules (text/basic_tokenizer.py), and the character offsets with Python's own string slicing.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfx_transfer import BertEncoder, BertTokenizer
from tfx_transfer.data.conll import TaggedSentence
from tfx_transfer.data.tagging import encode_tagged
from tfx_transfer.export import export_for_serving
from tfx_transfer.export.tagger_module import greedy_windows
from tfx_transfer.models import BertTokenClassifier
from tfx_transfer.text.basic_tokenizer import basic_tokenize

from conftest import TINY_ENCODER as TINY
from test_export import _fresh_process

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SEQ = 12  # windows of 10 pieces: the longer texts below need several
TEXTS = [
    "Angela Merkel visited Paris.",
    "Café Zürich\u00a0naïve: don't stop\tbelieving!",  # accents, NBSP, tab, punctuation inside words
    "zero\u200bwidth \x01 \u0301 joiners",  # a Cf character inside a word; words of nothing but dropped characters
    "",
    "   ",
    "东京 and 北京 are cities, " * 3 + "antidisestablishmentarianism " + "x" * 300,  # CJK, windows, a long word
    "e.g. U.S.A. $5.00 ... (ok) [fine] {yes} 12:30 a/b #tag @user",
]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def tagger(tokenizer):
    return BertTokenClassifier(BertEncoder(vocab_size=tokenizer.vocab_size, **TINY), len(LABELS))


def _expected(model, tokenizer, words):
    """The training path's prediction for one text's words: labels and probabilities at first sub-tokens."""
    if not words:
        return [], np.zeros([0])
    split = encode_tagged([TaggedSentence("t", words)], tokenizer, SEQ)
    probabilities = tf.nn.softmax(np.asarray(model(split.features, training=False))).numpy()  # [windows, L, C]
    first = probabilities[split.first_token]  # [words, C] in word order: windows are consecutive
    assert len(first) == len(words)
    return [LABELS[i] for i in first.argmax(-1)], first.max(-1)


def test_greedy_windows_match_the_training_windows():
    rows = tf.constant([0, 0, 0, 0, 1, 1, 3, 3, 3], tf.int64)
    lengths = tf.constant([3, 4, 5, 1, 6, 6, 2, 2, 2], tf.int64)
    window, start = greedy_windows(rows, lengths, budget=7)
    assert window.numpy().tolist() == [0, 0, 1, 1, 0, 1, 0, 0, 0]
    assert start.numpy().tolist() == [0, 3, 0, 5, 0, 0, 0, 2, 4]
    window, start = greedy_windows(tf.zeros([0], tf.int64), tf.zeros([0], tf.int64), budget=7)
    assert window.shape == (0,) and start.shape == (0,)


def test_tagger_export_labels_every_word_as_training_does_in_a_fresh_process(tagger, tokenizer, tmp_path):
    path = export_for_serving(tagger, tmp_path / "ner", tokenizer, labels=LABELS, max_seq_length=SEQ, task="tagger")
    assert os.path.isfile(os.path.join(path, "assets", "vocab.txt"))
    served = _fresh_process("""
import tensorflow as tf, tensorflow_text
m = tf.saved_model.load(DATA["path"])
out = {}
for name, texts in (("all", DATA["texts"]), ("one", DATA["texts"][:1])):
    r = m.signatures["serving_default"](text=tf.constant(texts))
    out[name] = {k: v.numpy().tolist() if v.dtype != tf.string else [[x.decode() for x in row] for row in v.numpy()]
                 for k, v in r.items()}
ids = {k: tf.constant([[2, 7, 8, 3, 0]], tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}
ids["input_mask"] = tf.constant([[1, 1, 1, 1, 0]], tf.int32)
ids["input_type_ids"] = tf.zeros([1, 5], tf.int32)
out["from_ids"] = m.signatures["from_ids"](**ids)["logits"].numpy().tolist()
session = session_outputs(DATA["path"], "serving_default", {"text": DATA["texts"]})
out["session"] = {"labels": [[x.decode() for x in row] for row in session["labels"]],
                  "probabilities": session["probabilities"].tolist()}
print(json.dumps(out))
""", {"path": path, "texts": TEXTS}, tmp_path)
    out = served["all"]
    assert served["session"]["labels"] == out["labels"]
    np.testing.assert_allclose(served["session"]["probabilities"], out["probabilities"], atol=1e-5)
    assert len(out["words"]) == len(TEXTS)
    for i, text in enumerate(TEXTS):
        n = out["num_words"][i]
        words = out["words"][i][:n]
        assert all(w == "" for w in out["words"][i][n:]) and all(s == -1 for s in out["start_offsets"][i][n:])
        # The words are BERT's (normalised, they are BasicTokenizer's words) and point into the text as given.
        normalised = [w.decode() for w in tokenizer.normalize(tf.constant(words or [""])).numpy()][:n]
        assert normalised == [w.replace("x" * 300, "\ue000") for w in basic_tokenize(text, True)], text
        assert [text[s:e] for s, e in zip(out["start_offsets"][i][:n], out["end_offsets"][i][:n])] == words
        labels, probabilities = _expected(tagger, tokenizer, words)
        assert out["labels"][i][:n] == labels
        assert out["label_ids"][i][:n] == [LABELS.index(label) for label in labels]
        np.testing.assert_allclose(out["probabilities"][i][:n], probabilities, atol=1e-5)
    assert out["num_words"][3:5] == [0, 0] and out["num_words"][5] > 2 * (SEQ - 2)  # several windows
    one = served["one"]
    assert one["labels"] == [out["labels"][0][:out["num_words"][0]]]
    ids = {"input_word_ids": [[2, 7, 8, 3, 0]], "input_mask": [[1, 1, 1, 1, 0]], "input_type_ids": [[0] * 5]}
    np.testing.assert_allclose(served["from_ids"], np.asarray(tagger(
        {k: np.asarray(v, np.int32) for k, v in ids.items()}, training=False)), atol=1e-5)


def test_tagger_export_empty_batches_bad_input_and_warmup(tagger, tokenizer, tmp_path):
    path = export_for_serving(tagger, tmp_path / "ner", tokenizer, labels=LABELS, max_seq_length=SEQ, task="tagger")
    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    out = serve(text=tf.constant([], tf.string))
    assert out["labels"].shape == (0, 0) and out["num_words"].shape == (0,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Shape of tensor text \\[1,2\\]"):
        serve(text=tf.constant([["a", "b"]]))
    with pytest.raises(ValueError, match="needs its label names"):
        export_for_serving(tagger, tmp_path / "none", tokenizer, labels=None, task="tagger")
    serving_apis = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")))
    assert records
    for record in records:
        request = serving_apis.PredictionLog.FromString(record.numpy()).predict_log.request
        texts = [x.decode() for x in tf.make_ndarray(request.inputs["text"])]
        out = loaded.signatures[request.model_spec.signature_name](text=tf.constant(texts))
        assert out["labels"].shape[0] == len(texts) and min(out["num_words"].numpy()) > 0
