"""SQuAD: reading, doc-stride features, post-processing, official metrics, run_squad.py end to end."""

import json
import os

import numpy as np
import pytest
from absl import flags

from tfx_transfer.data.squad import build_features, final_text, postprocess, read_squad
from tfx_transfer.jobs import squad as squad_job
from tfx_transfer.metrics.squad import evaluate, exact_score, f1_score_v1, f1_score_v2, normalize_answer
from tfx_transfer.text import BertTokenizer

FLAGS = flags.FLAGS
squad_job.define_flags()


def squad_json(paragraphs, version_2=False):
    """{"data": [...]} from [(context, [(id, question, answer_text or None, answer_start)])]."""
    out = []
    for context, questions in paragraphs:
        qas = []
        for qid, question, answer, start in questions:
            qa = {"id": qid, "question": question, "answers": [] if answer is None else
                  [{"text": answer, "answer_start": start}]}
            if version_2:
                qa["is_impossible"] = answer is None
                if answer is None:
                    qa["plausible_answers"] = [{"text": context.split()[0], "answer_start": 0}]
            qas.append(qa)
        out.append({"title": "t", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "2.0" if version_2 else "1.1", "data": out}


def write(tmp_path, data, name="squad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


def _answer_from_feature(feature, example, tokenizer):
    """The original words a feature's labelled span covers (what the post-processing would print)."""
    s, e = feature.start_position, feature.end_position
    return " ".join(example.doc_tokens[feature.token_to_orig_map[s]:feature.token_to_orig_map[e] + 1])


CONTEXT = ("The Normans (Norman: Nourmands; French: Normands) were the people who in the 10th and 11th centuries "
           "gave their name to Normandy, a region in France. Their leader, Rollo, swore fealty to King Charles III "
           "of West Francia in 911.")


@pytest.mark.parametrize("answer", ["Normandy", "10th and 11th centuries", "Rollo", "(Norman: Nourmands; French: "
                                    "Normands)", "King Charles III", "911"])
def test_answer_char_offsets_to_token_spans(answer, tokenizer, tmp_path):
    start = CONTEXT.index(answer)
    path = write(tmp_path, squad_json([(CONTEXT, [("q1", "What?", answer, start)])]))
    examples, _ = read_squad(path, is_training=True)
    features = build_features(examples, tokenizer, max_seq_length=128, doc_stride=32, is_training=True)
    assert len(features) == 1
    covered = _answer_from_feature(features[0], examples[0], tokenizer)
    assert covered == answer or answer in covered  # whole whitespace words around the answer
    pieces = tokenizer.convert_ids_to_tokens(features[0].token_ids[features[0].start_position:
                                                                   features[0].end_position + 1])
    assert " ".join(pieces).replace(" ##", "") == " ".join(
        tokenizer.convert_ids_to_tokens(tokenizer.tokenize(answer).to_list()[0])).replace(" ##", "")


def test_improve_answer_span_trims_to_the_answer_inside_a_word(tokenizer, tmp_path):
    context = "The year was 1895-1896 in the story."
    path = write(tmp_path, squad_json([(context, [("q", "When?", "1895", context.index("1895"))])]))
    examples, _ = read_squad(path, is_training=True)
    feature = build_features(examples, tokenizer, 64, 16, max_query_length=16, is_training=True)[0]
    assert tokenizer.convert_ids_to_tokens(feature.token_ids[feature.start_position:feature.end_position + 1]) == \
        ["1895"]


def test_doc_stride_windows_and_max_context(tokenizer, tmp_path):
    words = [f"word{i}" for i in range(120)]
    context = " ".join(words)
    answer = "word95"
    path = write(tmp_path, squad_json([(context, [("q", "Which?", answer, context.index(answer + " "))])]))
    examples, _ = read_squad(path, is_training=True)
    features = build_features(examples, tokenizer, max_seq_length=64, doc_stride=32, max_query_length=8,
                              is_training=True)
    assert len(features) > 2
    inside = [f for f in features if f.start_position > 0]
    outside = [f for f in features if f.start_position == 0]
    assert inside and outside and all(f.end_position == 0 for f in outside)  # out-of-window -> [CLS]
    for f in inside:
        assert _answer_from_feature(f, examples[0], tokenizer) == answer
    # Every doc sub-token is the max-context token of exactly one window (google-research/bert's rule).
    max_context_tokens = sum(sum(f.token_is_max_context.values()) for f in features)
    assert max_context_tokens == len(tokenizer.tokenize([context]).to_list()[0])


def test_v2_impossible_questions_point_at_cls(tokenizer, tmp_path):
    path = write(tmp_path, squad_json([(CONTEXT, [("q1", "Who?", "Rollo", CONTEXT.index("Rollo")),
                                                  ("q2", "What is the capital of Mars?", None, 0)])], version_2=True))
    examples, _ = read_squad(path, is_training=True, version_2=True)
    assert [e.is_impossible for e in examples] == [False, True]
    features = build_features(examples, tokenizer, 128, 32, is_training=True)
    impossible = [f for f in features if f.is_impossible]
    assert impossible and all(f.start_position == f.end_position == 0 for f in impossible)


@pytest.mark.parametrize("data, message", [
    ({"version": "1.1"}, "the top-level object has no 'data' key"),
    ({"data": [{"title": "x"}]}, "an article has no 'paragraphs' key"),
    ({"data": [{"paragraphs": [{"context": "abc", "qas": [{"question": "q", "answers": []}]}]}]},
     "a question has no 'id' key"),
    (squad_json([("short text", [("q9", "?", "text", 40)])]), "question q9: answer_start=40"),
])
def test_malformed_files_name_the_problem(data, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        read_squad(write(tmp_path, data), is_training=True)


def test_misplaced_answer_is_skipped_with_a_warning(tmp_path, caplog):
    context = "alpha beta gamma delta"
    path = write(tmp_path, squad_json([(context, [("good", "?", "gamma", 11), ("bad", "?", "delta", 0)])]))
    examples, _ = read_squad(path, is_training=True)
    assert [e.qas_id for e in examples] == ["good"]


# ---------------------------------------------------------------------------------------------- post-processing
def test_final_text_projects_onto_the_original_words():
    assert final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
    assert final_text("1895", "(1895-1896)", True) == "1895"
    assert final_text("cafe", "Café,", True) == "Café"
    assert final_text("nothing like it", "Steve Smith's", True) == "Steve Smith's"


def _fake_logits(features, spans, width):
    """Start/end logits that put `spans` (feature index -> list of (start, end, score)) on top."""
    starts = np.full((len(features), width), -10.0, np.float32)
    ends = np.full((len(features), width), -10.0, np.float32)
    for index, entries in spans.items():
        for s, e, score in entries:
            starts[index, s] = max(starts[index, s], score / 2)
            ends[index, e] = max(ends[index, e], score / 2)
    return starts, ends


def test_nbest_order_probabilities_and_null_threshold(tokenizer, tmp_path):
    path = write(tmp_path, squad_json([(CONTEXT, [("q1", "Who swore fealty?", None, 0)])], version_2=True))
    examples, _ = read_squad(path, is_training=False, version_2=True)
    features = build_features(examples, tokenizer, 128, 32)
    feature = features[0]
    def pieces_of(word):  # feature positions of the word's pieces, without its trailing comma
        positions = sorted(p for p, o in feature.token_to_orig_map.items() if examples[0].doc_tokens[o] == word)
        return positions[0], positions[-2]

    rollo, normandy = pieces_of("Rollo,"), pieces_of("Normandy,")
    starts, ends = _fake_logits(features, {0: [(*rollo, 8.0), (*normandy, 6.0), (0, 0, 2.0)]},
                                len(feature.token_ids))
    # max_answer_length=5 rules out the cross span from "Normandy" to "Rollo" (logits add up independently).
    predictions, nbest, null_odds = postprocess(examples, features, starts, ends, tokenizer.vocab, True,
                                                max_answer_length=5, version_2=True)
    texts = [n["text"] for n in nbest["q1"]]
    assert texts[:2] == ["Rollo", "Normandy"] and "" in texts
    probabilities = [n["probability"] for n in nbest["q1"]]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-6
    assert predictions["q1"] == "Rollo" and null_odds["q1"] == pytest.approx(2.0 - 8.0)
    predictions, _, _ = postprocess(examples, features, starts, ends, tokenizer.vocab, True, max_answer_length=5,
                                    version_2=True, null_score_diff_threshold=-7.0)
    assert predictions["q1"] == ""


# ---------------------------------------------------------------------------------------------- metrics
def test_normalisation_and_scores_by_hand():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert exact_score("the Eiffel Tower", "Eiffel tower.") == 1
    # gold "eiffel tower paris" vs prediction "tower in paris": overlap 2, P = 2/3, R = 2/3.
    assert f1_score_v1("Eiffel Tower, Paris", "tower in Paris") == pytest.approx(2 / 3)
    assert f1_score_v1("", "") == 0.0 and f1_score_v2("", "") == 1.0 and f1_score_v2("a", "") == 1.0
    assert f1_score_v2("x", "") == 0.0


def test_v1_evaluation_max_over_golds_and_missing_predictions():
    data = {"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "a", "answers": [{"text": "Denver Broncos"}, {"text": "the Broncos"}]},
        {"id": "b", "answers": [{"text": "Santa Clara"}]},
        {"id": "c", "answers": [{"text": "gold"}]}]}]}]}
    result = evaluate(data["data"], {"a": "Broncos", "b": "Santa Clara, California"})
    # a: exact 1 (vs "the Broncos"), f1 1; b: exact 0, f1 2*(2/3*1)/(2/3+1) = 0.8; c: unanswered, counted as 0.
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 0.8) / 3)


def test_v2_evaluation_has_no_answers_and_best_threshold():
    data = [{"paragraphs": [{"context": "c", "qas": [
        {"id": "h1", "answers": [{"text": "yes"}]}, {"id": "h2", "answers": [{"text": "blue sky"}]},
        {"id": "n1", "answers": []}, {"id": "n2", "answers": []}]}]}]
    predictions = {"h1": "yes", "h2": "red sky", "n1": "", "n2": "something"}
    null_odds = {"h1": -3.0, "h2": 1.0, "n1": 2.0, "n2": 0.5}
    result = evaluate(data, predictions, null_odds, null_threshold=1.0, version_2=True)
    # threshold 1.0: n1 (2.0 > 1) -> no answer, correct; others keep their text: h1 1, h2 0 (f1 0.5), n2 wrong.
    assert result["exact"] == pytest.approx(50.0) and result["f1"] == pytest.approx(62.5)
    assert result["HasAns_exact"] == pytest.approx(50.0) and result["NoAns_exact"] == pytest.approx(50.0)
    assert result["HasAns_total"] == 2 and result["NoAns_total"] == 2
    # Sweep (official find_best_thresh): start 2 (all "no answer" right); h1 +1 -> 3; n2 -1 -> 2; h2 +0 -> 2;
    # n1 +0 -> 2. Best exact 3/4 at h1's odds -3.0.
    assert result["best_exact"] == pytest.approx(75.0) and result["best_exact_thresh"] == -3.0
    assert result["best_f1"] == pytest.approx(75.0) and result["best_f1_thresh"] == -3.0


# ---------------------------------------------------------------------------------------------- end to end
THREE_QUESTIONS = [(CONTEXT, [("q1", "Who swore fealty to King Charles III?", "Rollo", CONTEXT.index("Rollo")),
                              ("q2", "When did Rollo swear fealty?", "911", CONTEXT.index("911"))]),
                   ("Paris is the capital and most populous city of France.",
                    [("q3", "What is the capital of France?", "Paris", 0)])]


def run_job(argv):
    FLAGS.unparse_flags()
    FLAGS(["run_squad.py"] + argv)
    return squad_job.main(["run_squad.py"])


def test_run_squad_end_to_end(tmp_path, minilm_dir):
    train = write(tmp_path, squad_json(THREE_QUESTIONS), "train.json")
    out = tmp_path / "out"
    assert run_job([f"--train_file={train}", f"--predict_file={train}", f"--output_dir={out}", "--do_train",
                    "--do_predict", "--eval", "--max_seq_length=64", "--max_query_length=16", "--doc_stride=32", "--train_batch_size=2",
                    "--predict_batch_size=2", "--num_train_epochs=2", "--learning_rate=1e-4", "--run_eagerly",
                    "--adaptation=adapters", "--adapter_size=8"]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert set(predictions) == {"q1", "q2", "q3"}
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert set(nbest["q1"][0]) == {"text", "probability", "start_logit", "end_logit"}
    results = json.loads((out / "eval_results.json").read_text())
    assert set(results) == {"exact_match", "f1", "global_step"} and results["global_step"] == 5  # 5 windows, 2 epochs, batch 2
    assert sorted(os.listdir(out / "final")) == ["README.md", "adapter.safetensors", "config.json", "model.keras",
                                                 "model_card.json", "task.json", "tokenizer_config.json", "vocab.txt"]


def test_run_squad_keeps_the_best_f1_during_training(tmp_path, tiny_model):
    """--eval_every_steps on --predict_file: the best official F1 becomes final/, and the predictions after training
    are the best model's (the same F1)."""
    train = write(tmp_path, squad_json(THREE_QUESTIONS), "train.json")
    out = tmp_path / "out"
    assert run_job([f"--train_file={train}", f"--predict_file={train}", f"--output_dir={out}", "--do_train",
                    "--do_predict", "--eval", f"--pretrained={tiny_model}", "--max_seq_length=64",
                    "--max_query_length=16", "--doc_stride=32", "--train_batch_size=2", "--predict_batch_size=2",
                    "--num_train_epochs=3", "--learning_rate=3e-3", "--run_eagerly", "--eval_every_steps=2"]) == 0
    best = json.loads((out / "final" / "task.json").read_text())["best_model"]
    results = json.loads((out / "eval_results.json").read_text())
    steps = results["global_step"]
    assert steps >= 3 and best["metric"] == "eval_f1"
    assert best["evaluations"] == steps // 2 + steps % 2  # every 2 steps, and at the end
    assert results["f1"] == pytest.approx(best["value"])
    assert json.loads((out / "final" / "model_card.json").read_text())["best_model"] == best


def test_run_squad_v2_and_flag_errors(tmp_path, minilm_dir, capsys):
    data = squad_json([(CONTEXT, [("q1", "Who?", "Rollo", CONTEXT.index("Rollo")),
                                  ("q2", "What is on Mars?", None, 0)])], version_2=True)
    path = write(tmp_path, data)
    out = tmp_path / "v2"
    assert run_job([f"--predict_file={path}", f"--output_dir={out}", "--do_predict", "--eval",
                    "--version_2_with_negative", "--find_null_threshold", "--max_seq_length=64", "--max_query_length=16",
                    "--doc_stride=32"]) == 0
    null_odds = json.loads((out / "null_odds.json").read_text())
    results = json.loads((out / "eval_results.json").read_text())
    assert set(null_odds) == {"q1", "q2"} and "best_f1_thresh" in results and "HasAns_exact" in results
    capsys.readouterr()
    for argv, message in [
        (["--do_predict"], "--predict_file must be specified"),
        (["--do_train", "--predict_file=x"], "--train_file must be specified"),
        ([f"--predict_file={path}", "--do_predict", "--max_seq_length=60", "--max_query_length=64"],
         "The max_seq_length (60) must be greater than max_query_length (64) + 3"),
        ([f"--predict_file={path}", "--do_predict", "--max_seq_length=64", "--max_query_length=16", "--doc_stride=64"],
         "--doc_stride=64 must be between 1 and --max_seq_length - 1"),
        ([f"--predict_file={path}", "--do_predict", "--find_null_threshold", "--max_seq_length=64",
          "--max_query_length=16", "--doc_stride=32"], "needs --version_2_with_negative"),
    ]:
        assert run_job(argv + [f"--output_dir={tmp_path / 'e'}"]) == 2
        assert message in capsys.readouterr().err


def test_run_squad_with_optimisation_flags(tmp_path, tiny_model):
    """Issue 9's flags on run_squad.py too: the span labeler trains with sequential unfreezing, a constant
    schedule, accumulation, L2-SP and the auxiliary masked-LM (added to its built-in span loss)."""
    from tfx_transfer.models import span_labeler

    paragraphs = [(CONTEXT, [("q1", "Who swore fealty to King Charles III?", "Rollo", CONTEXT.index("Rollo")),
                             ("q2", "When did Rollo swear fealty?", "911", CONTEXT.index("911"))])]
    train = write(tmp_path, squad_json(paragraphs), "train.json")
    seen = []
    original = span_labeler.BertSpanLabeler.auxiliary_loss

    def spy(self, x, training=True):
        value = original(self, x, training)
        seen.append(training)
        return value

    span_labeler.BertSpanLabeler.auxiliary_loss = spy
    try:
        assert run_job([f"--train_file={train}", f"--predict_file={train}", f"--output_dir={tmp_path / 'out'}",
                        f"--pretrained={tiny_model}", "--do_train", "--do_predict", "--max_seq_length=64",
                        "--max_query_length=16", "--doc_stride=32", "--train_batch_size=1", "--predict_batch_size=2",
                        "--num_train_epochs=2", "--learning_rate=1e-3", "--run_eagerly", "--unfreezing=sequential",
                        "--sequential_unfreezing_epochs=0.5,0.5", "--lr_schedule=constant",
                        "--gradient_accumulation_steps=2", "--l2sp=0.01", "--aux_mlm_weight=0.5"]) == 0
    finally:
        span_labeler.BertSpanLabeler.auxiliary_loss = original
    assert True in seen  # the auxiliary loss ran in training steps
    assert set(json.loads((tmp_path / "out" / "predictions.json").read_text())) == {"q1", "q2"}
