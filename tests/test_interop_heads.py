"""Fine-tuned models from other tools load with their heads (tests/fixtures: google-research/bert's
run_classifier / run_squad, Model Garden's BertClassifier / BertSpanLabeler, transformers' BertFor*, keras-hub's
BertTextClassifier), reproducing the producer's logits to 1e-4; a head of another task or size is discarded by
name, never loaded into the wrong place."""

import re

import numpy as np
import pytest

from fixture_utils import TOLERANCE, expected, inputs, max_difference, path
from tfx_transfer import BertClassifier, BertEncoder, BertSpanLabeler
from tfx_transfer.checkpoints import load_checkpoint
from tfx_transfer.checkpoints.infer import infer_config
from tfx_transfer.config import BertConfig
from tfx_transfer.models import FeatureClassifier
from tfx_transfer.pretrained import resolve_pretrained

HEADS = {"classifier": (r"classifier/.*",), "span": (r"span_logits/.*",)}
GOOGLE_CONFIG = path("google/pretraining/bert_config.json")


def _config(fixture):
    if fixture.startswith("google/"):
        return BertConfig.from_json_file(GOOGLE_CONFIG)
    if fixture.startswith("model_garden/"):
        return infer_config(path(fixture))
    return resolve_pretrained(path(fixture)).config


def _load(model_class, fixture, **kwargs):
    encoder = BertEncoder.from_bert_config(_config(fixture))
    model = model_class(encoder, **kwargs)
    report = load_checkpoint(model, path(fixture), allow_missing=model.head_patterns, heads=model.loads_producer_heads)
    return model, report


def _head_sources(report, head):
    return {item.source: item.target for item in report.loaded if item.target.startswith(head + "/")}


CLASSIFIERS = [  # fixture, the producer's head tensors -> ours
    ("google/run_classifier", {"output_weights": "classifier/kernel", "output_bias": "classifier/bias"}),
    ("model_garden/bert_classifier", {"sentence_prediction/logits/kernel": "classifier/kernel",
                                      "sentence_prediction/logits/bias": "classifier/bias"}),
    ("hf/sequence_classification", {"classifier.weight": "classifier/kernel", "classifier.bias": "classifier/bias"}),
    ("keras_hub/bert_text_classifier", {"logits/kernel": "classifier/kernel", "logits/bias": "classifier/bias"}),
]


@pytest.mark.parametrize("fixture,head", CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_fine_tuned_classifier_loads_with_its_head(fixture, head):
    model, report = _load(BertClassifier, fixture, num_classes=3)
    assert _head_sources(report, "classifier") == head
    assert not report.missing_in_checkpoint and not report.unused_in_checkpoint, report
    stored = expected(fixture)
    difference = max_difference(model(inputs(stored)), stored["logits"])
    assert difference <= TOLERANCE, difference


SPAN_LABELERS = [
    ("google/run_squad", {"cls/squad/output_weights": "span_logits/kernel", "cls/squad/output_bias": "span_logits/bias"}),
    ("model_garden/bert_span_labeler", {"predictions/transform/logits/kernel": "span_logits/kernel",
                                        "predictions/transform/logits/bias": "span_logits/bias"}),
    ("hf/question_answering", {"qa_outputs.weight": "span_logits/kernel", "qa_outputs.bias": "span_logits/bias"}),
]


@pytest.mark.parametrize("fixture,head", SPAN_LABELERS, ids=[s[0] for s in SPAN_LABELERS])
def test_fine_tuned_qa_model_loads_with_its_head(fixture, head):
    model, report = _load(BertSpanLabeler, fixture)
    assert _head_sources(report, "span_logits") == head
    newly = {m.name for m in report.missing_in_checkpoint}
    # BertForQuestionAnswering has no pooler (add_pooling_layer=False); run_squad's checkpoint keeps the pretrained one
    assert newly == ({"pooler/dense/bias", "pooler/dense/kernel"} if fixture.startswith("hf/") else set())
    stored = expected(fixture)
    out = model(inputs(stored))
    mask = stored["input_mask"]
    for key in ("start_logits", "end_logits"):
        difference = max_difference(out[key], stored[key], mask)
        assert difference <= TOLERANCE, (key, difference)


def test_optimizer_state_of_fine_tuned_checkpoints_is_recognised():
    """Adam slots, counters and Model Garden's optimizer state are bookkeeping: ignored, never 'unmatched'."""
    _, google = _load(BertClassifier, "google/run_classifier", num_classes=3)
    assert len(google.ignored) == 2 * 41 + 1 and all(re.fullmatch(r".*/adam_[mv]|global_step", n) for n in google.ignored)
    _, garden = _load(BertClassifier, "model_garden/bert_classifier", num_classes=3)
    slots = [n for n in garden.ignored if "/.OPTIMIZER_SLOT/" in n]
    assert len(slots) == 2 * 41
    assert set(garden.ignored) - set(slots) == {"global_step", "save_counter/.ATTRIBUTES/VARIABLE_VALUE",
                                                "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE",
                                                "optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE",
                                                "optimizer/beta_2/.ATTRIBUTES/VARIABLE_VALUE",
                                                "optimizer/decay/.ATTRIBUTES/VARIABLE_VALUE"}


@pytest.mark.parametrize("fixture", ["google/run_classifier", "hf/sequence_classification",
                                     "keras_hub/bert_text_classifier", "model_garden/bert_classifier"])
def test_a_head_for_another_number_of_classes_is_discarded(fixture):
    model, report = _load(BertClassifier, fixture, num_classes=2)
    discarded = [u for u in report.unused_in_checkpoint if u.target.startswith("classifier/")]
    assert len(discarded) == 2 and all("another number of classes" in u.note for u in discarded)
    assert {m.name for m in report.missing_in_checkpoint} == {"classifier/kernel", "classifier/bias"}


def test_heads_of_other_tasks_never_load_into_the_wrong_head():
    # A 5-tag token classifier's `classifier.*` has a 5-class classifier's shape; the architecture says no.
    _, report = _load(BertClassifier, "hf/token_classification", num_classes=5)
    assert {u.name for u in report.unused_in_checkpoint} == {"classifier.weight", "classifier.bias"}
    assert {m.name for m in report.missing_in_checkpoint} >= {"classifier/kernel", "classifier/bias"}
    # A sentence classifier's head is not a span head, nor the reverse.
    _, report = _load(BertSpanLabeler, "hf/sequence_classification")
    assert {u.name for u in report.unused_in_checkpoint} == {"classifier.weight", "classifier.bias"}
    _, report = _load(BertClassifier, "google/run_squad", num_classes=2)
    assert {u.name for u in report.unused_in_checkpoint} == {"cls/squad/output_weights", "cls/squad/output_bias"}
    # Model Garden names Google's next-sentence head predictions/transform/logits, like its span heads.
    _, report = _load(BertSpanLabeler, "model_garden/name_based")
    assert "predictions/transform/logits/kernel" in {u.name for u in report.unused_in_checkpoint}
    assert {m.name for m in report.missing_in_checkpoint} == {"span_logits/kernel", "span_logits/bias"}


def test_a_head_over_other_features_takes_no_producer_head():
    """FeatureClassifier's `classifier` reads a scalar mix of all layers, not the pooled [CLS] vector."""
    _, report = _load(FeatureClassifier, "hf/sequence_classification", num_classes=3)
    notes = {u.name: u.note for u in report.unused_in_checkpoint}
    assert set(notes) == {"classifier.weight", "classifier.bias"}
    assert all("computes something else" in note for note in notes.values())


def test_label_names_from_the_producer():
    assert resolve_pretrained(path("hf/sequence_classification")).labels == ("contradiction", "entailment", "neutral")
    assert resolve_pretrained(path("hf/question_answering")).labels is None  # transformers' LABEL_0, LABEL_1
    assert resolve_pretrained(path("keras_hub/bert_text_classifier")).labels is None  # presets carry no names


def test_reorder_classes_follows_the_label_names():
    from tfx_transfer.models.classifier import reorder_classes

    model, _ = _load(BertClassifier, "hf/sequence_classification", num_classes=3)
    stored = expected("hf/sequence_classification")
    before = np.asarray(model(inputs(stored)))
    reorder_classes(model, [2, 0, 1])  # neutral, contradiction, entailment
    np.testing.assert_allclose(np.asarray(model(inputs(stored))), before[:, [2, 0, 1]], atol=1e-6)
    with pytest.raises(ValueError, match="not a permutation"):
        reorder_classes(model, [0, 0, 1])


def test_fine_tuned_token_classifier_loads_with_its_head():
    """transformers' BertForTokenClassification (5 BIO tags, cased): its `classifier` goes to our token head and
    our logits at every token equal the producer's; a sentence classifier's head never loads into it."""
    from tfx_transfer.models import BertTokenClassifier

    model, report = _load(BertTokenClassifier, "hf/token_classification", num_labels=5)
    assert _head_sources(report, "token_classifier") == {"classifier.weight": "token_classifier/kernel",
                                                         "classifier.bias": "token_classifier/bias"}
    assert not report.unused_in_checkpoint, report
    stored = expected("hf/token_classification")
    difference = max_difference(model(inputs(stored)), stored["logits"])
    assert difference <= TOLERANCE, difference
    _, report = _load(BertTokenClassifier, "hf/sequence_classification", num_labels=3)
    assert {u.name for u in report.unused_in_checkpoint} == {"classifier.weight", "classifier.bias"}
    assert {m.name for m in report.missing_in_checkpoint} >= {"token_classifier/kernel", "token_classifier/bias"}
