"""Our tokenizer against the producers' own tokenizers, on their stored outputs (tests/fixtures): google-research/
bert's FullTokenizer (the reference: equal everywhere, words of 100-200 characters included), Hugging Face's
BertTokenizer, Model Garden's preprocessing SavedModel and keras-hub's BertTokenizer (equal except where their
normalisation differs by design; each such string is listed with the reason, and must still differ)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from fixture_utils import CASED_SENTENCES, PAIRS, SENTENCES, expected, path
from tfx_transfer import BertPreprocessor, BertTokenizer

# tensorflow-text's lower-casing (Model Garden's preprocessing, keras-hub) is NFKC case folding: it folds what
# BERT's lower() + NFD keeps, and it does not drop control characters, U+FFFD or NUL as BERT's text cleaning does.
NFKC_CASE_FOLDING = {
    "Straße ß STRASSE": "case folding turns ß into ss",
    "ﬁnance ﬂow": "NFKC splits the ﬁ / ﬂ ligatures",
    "Ｈｅｌｌｏ ｗｏｒｌｄ": "NFKC maps full-width letters to ASCII",
    "x² + y³ = ½": "NFKC maps superscripts and fractions to digits",
    "İstanbul ΣΊΣΥΦΟΣ": "case folding maps a word-final Σ to σ, lower-casing to ς",
}
NOT_CLEANED = {"control\x07bell \ufffdreplacement \x00null": "control characters, U+FFFD and NUL are kept"}
MODEL_GARDEN_DIVERGES = {**NFKC_CASE_FOLDING, **NOT_CLEANED}
KERAS_HUB_DIVERGES = {  # it keeps accents (strip_accents=False), so the Greek line comes out as ours
    **{k: v for k, v in MODEL_GARDEN_DIVERGES.items() if not k.startswith("İstanbul")},
    "zero\u200bwidth soft\u00adhyphen": "format characters (U+200B, U+00AD) are kept, not removed",
    "tab\tnew\nline\rreturn\u00a0nbsp": "U+00A0 (no-break space) is no word boundary: 'return\u00a0nbsp' is one [UNK]",
}
# Hugging Face's tokenizers lower-case character by character: no word-final sigma (ς) rule.
HF_DIVERGES = {"İstanbul ΣΊΣΥΦΟΣ": "per-character lower-casing maps a word-final Σ to σ, Python's lower() to ς"}


def _probe(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return json.load(f)


def _compare(probe, tokenizer):
    strings = [s for s, _ in probe["ids"]]
    ours = tokenizer.tokenize(tf.constant(strings)).to_list()
    return {s: (theirs, mine) for (s, theirs), mine in zip(probe["ids"], ours) if theirs != mine}


@pytest.mark.parametrize("name,lower", [("uncased", True), ("cased", False)])
def test_ids_equal_google_full_tokenizer_everywhere(name, lower):
    probe = _probe("google", "full_tokenizer", f"{name}.json")
    tokenizer = BertTokenizer(path("vocab", f"{name}_vocab.txt"), lower)  # google-research/bert's defaults
    assert tokenizer.max_chars_per_word == 200
    assert _compare(probe, tokenizer) == {}
    long_words = [ids for s, ids in probe["ids"] if s.startswith("short ") and 100 < len(s) - len("short  end") <= 200]
    assert len(long_words) == 4 and all(1 not in ids for ids in long_words)  # words of 101-200 chars: real pieces


def test_words_over_the_limit_become_one_unk():
    probe = dict(_probe("google", "full_tokenizer", "uncased.json")["ids"])
    word = "abcdefghij" * 21
    assert probe[f"short {word[:201]} end"][1:-1] == [1] and 1 not in probe[f"short {word[:200]} end"]


@pytest.mark.parametrize("name", ["uncased", "cased"])
def test_ids_equal_hugging_face_where_its_lowercasing_agrees(name):
    probe = _probe("hf", "tokenizer_probe", f"{name}.json")
    directory = "hf/bert_model" if name == "uncased" else "hf/token_classification"
    tokenizer = BertTokenizer.from_pretrained(path(directory))  # settings from tokenizer.json
    assert tokenizer.max_chars_per_word == 100 and tokenizer.do_lower_case == (name == "uncased")
    differ = _compare(probe, tokenizer)
    assert set(differ) == (set(HF_DIVERGES) if name == "uncased" else set()), differ


def test_ids_equal_model_garden_preprocessing_except_its_normalisation():
    probe = _probe("model_garden", "hub_preprocessing", "tokenize.json")
    tokenizer = BertTokenizer.from_pretrained(path("model_garden/hub_encoder"))  # the module's vocab and casing
    assert tokenizer.max_chars_per_word == 100  # tensorflow-text's 100 bytes per word
    assert set(_compare(probe, tokenizer)) == set(MODEL_GARDEN_DIVERGES)


def test_ids_equal_keras_hub_tokenizer_except_its_normalisation():
    probe = _probe("keras_hub", "tokenizer_probe", "uncased.json")
    tokenizer = BertTokenizer.from_pretrained(path("keras_hub/bert_backbone"))
    assert tokenizer.strip_accents is False
    assert set(_compare(probe, tokenizer)) == set(KERAS_HUB_DIVERGES)


@pytest.mark.parametrize("fixture,texts", [
    ("hf/bert_model", SENTENCES), ("hf/sequence_classification", PAIRS), ("hf/token_classification", CASED_SENTENCES),
    ("keras_hub/bert_backbone", SENTENCES), ("keras_hub/bert_text_classifier", PAIRS),
    ("google/pretraining", SENTENCES), ("google/run_classifier", PAIRS)])
def test_packed_inputs_equal_the_producers(fixture, texts):
    """[CLS] a [SEP] (b [SEP]), type ids and mask exactly as the producer fed its model."""
    stored = expected(fixture)
    source = "google/pretraining" if fixture.startswith("google/") else fixture
    pre = BertPreprocessor.from_pretrained(path(source), seq_length=stored["input_word_ids"].shape[1])
    packed = pre([a for a, _ in texts], [b for _, b in texts]) if isinstance(texts[0], tuple) else pre(texts)
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        np.testing.assert_array_equal(packed[key].numpy(), stored[key], err_msg=key)


def test_packed_inputs_equal_model_garden_bert_pack_inputs():
    stored = expected("model_garden/hub_preprocessing")
    pre = BertPreprocessor.from_pretrained(path("model_garden/hub_encoder"), seq_length=32)
    for prefix, packed in (("single_", pre(SENTENCES)),
                           ("pair_", pre([a for a, _ in PAIRS], [b for _, b in PAIRS]))):
        for key in ("input_word_ids", "input_mask", "input_type_ids"):
            np.testing.assert_array_equal(packed[key].numpy(), stored[prefix + key], err_msg=prefix + key)
