"""Token classification: entity-level metrics against seqeval's own output."""

import json
import pathlib

import numpy as np
import pytest

from tfx_transfer.metrics.tagging import chunks, entity_scores, is_chunk_tagging, token_accuracy

SEQEVAL = pathlib.Path(__file__).parent / "fixtures" / "seqeval" / "cases.json"


def _cases():
    return json.loads(SEQEVAL.read_text(encoding="utf-8"))


def test_chunks_are_seqeval_entities_on_generated_and_malformed_sequences():
    cases = _cases()
    assert {c["scheme"] for c in cases} == {"bio", "iob1", "iobes", "malformed"}
    for case in cases:
        for key in ("gold", "pred"):
            flat = [tag for sentence in case[key] for tag in sentence + ["O"]]
            assert [list(c) for c in chunks(flat)] == case[f"{key}_entities"], (case["scheme"], case[key])


def test_entity_scores_are_seqeval_scores():
    for case in _cases():
        ours = entity_scores(case["gold"], case["pred"])
        report = case["report"]
        assert ours["precision"] == pytest.approx(case["precision"], abs=1e-12)
        assert ours["recall"] == pytest.approx(case["recall"], abs=1e-12)
        assert ours["f1"] == pytest.approx(case["f1"], abs=1e-12)
        types = {k for k in report if not k.endswith(" avg")}
        assert set(ours["per_type"]) == types
        for type_ in types:
            for metric in ("precision", "recall", "f1"):
                assert ours["per_type"][type_][metric] == pytest.approx(report[type_][metric if metric != "f1" else
                                                                                     "f1-score"], abs=1e-12)
            assert ours["per_type"][type_]["support"] == report[type_]["support"]
        if not types:  # no chunk on either side: seqeval's averages are NaN (mean of nothing), ours 0
            assert ours["macro_f1"] == ours["weighted_f1"] == 0.0
            continue
        assert ours["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-12)
        assert ours["weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"], abs=1e-12)


def test_malformed_i_after_o_starts_a_chunk_and_types_split_chunks():
    assert chunks(["O", "I-PER", "I-PER", "I-LOC", "B-LOC", "E-LOC", "S-ORG"]) == [
        ("PER", 1, 2), ("LOC", 3, 3), ("LOC", 4, 5), ("ORG", 6, 6)]
    scores = entity_scores([["B-PER", "I-PER", "O"]], [["O", "I-PER", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # nothing to find: 0, as seqeval with zero_division=0
    with pytest.raises(ValueError, match="differ"):
        entity_scores([["O", "O"]], [["O"]])


def test_token_accuracy_and_chunk_scheme_detection():
    assert token_accuracy([["NOUN", "VERB"], ["DET"]], [["NOUN", "NOUN"], ["DET"]]) == pytest.approx(2 / 3)
    assert is_chunk_tagging(["O", "B-PER", "I-PER"]) and is_chunk_tagging(["S-LOC", "E-LOC", "O"])
    assert not is_chunk_tagging(["NOUN", "VERB", "PUNCT"]) and not is_chunk_tagging(["O"])


CONLLU = """# newdoc id = d1
# sent_id = s1
# text = They didn't go.
1\tThey\tthey\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdid\tdo\tAUX\tVBD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t1:nsubj\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = s2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter\tNNP\tB-NP\tB-PER
Blackburn\tNNP\tI-NP\tI-PER
"""


def test_conllu_skips_multiword_ranges_and_empty_nodes(tmp_path):
    from tfx_transfer.data.conll import read_tagged

    path = tmp_path / "x.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    first, second = read_tagged(str(path), label_column="upos")
    assert first.guid == "s1" and first.text == "They didn't go."
    assert first.words == ["They", "did", "n't", "go", "."]
    assert first.labels == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert read_tagged(str(path), label_column="xpos")[0].labels == ["PRP", "VBD", "RB", "VB", "."]
    assert second.words == ["Hi"] and second.text is None


def test_conll_columns_docstart_and_mixed_separators(tmp_path):
    from tfx_transfer.data.conll import label_list, read_tagged

    path = tmp_path / "train.txt"
    path.write_text(CONLL, encoding="utf-8")
    sentences = read_tagged(str(path))
    assert [s.words for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert sentences[1].labels == ["B-PER", "I-PER"] and sentences[0].guid == "train-0"
    assert read_tagged(str(path), label_column=2)[0].labels == ["B-NP", "B-VP", "B-NP"]  # chunking
    assert label_list(sentences) == ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    assert read_tagged(str(path), label_column=None)[0].labels is None


def test_conll_errors_name_the_line(tmp_path):
    from tfx_transfer.data.conll import ConllFormatError, read_tagged

    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(ConllFormatError, match=r"bad.txt:2: 1 column"):
        read_tagged(str(bad), label_column=1)
    badu = tmp_path / "bad.conllu"
    badu.write_text("1\tHi\thi\tINTJ\n", encoding="utf-8")
    with pytest.raises(ConllFormatError, match=r"bad.conllu:1: .*10 tab-separated"):
        read_tagged(str(badu))
    untagged = tmp_path / "untagged.conllu"
    untagged.write_text("1\tHi\thi\t_\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
    with pytest.raises(ConllFormatError, match="no tag"):
        read_tagged(str(untagged))
    with pytest.raises(ValueError, match="upos"):
        read_tagged(str(untagged), label_column="lemma")


def test_ud_english_ewt_as_released(shared_data):
    """The real UD English-EWT files (../shared/data): sentence and word counts of the release, 17 UPOS tags."""
    from tfx_transfer.data.conll import label_list, read_tagged

    counts = {}
    for split in ("dev", "test"):
        sentences = read_tagged(str(shared_data / "ud_english_ewt" / f"en_ewt-ud-{split}.conllu"))
        counts[split] = (len(sentences), sum(len(s.words) for s in sentences))
        assert len(label_list(sentences)) == 17
        assert all(len(s.words) == len(s.labels) for s in sentences)
    assert counts == {"dev": (2001, 25147), "test": (2077, 25094)}


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "run", "##ning", "don", "'", "t", "."]


@pytest.fixture()
def word_tokenizer(tmp_path):
    from tfx_transfer import BertTokenizer

    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(str(path), do_lower_case=True)


def _sentence(words, labels, guid="s"):
    from tfx_transfer.data.conll import TaggedSentence

    return TaggedSentence(guid, list(words), list(labels))


def test_first_sub_token_carries_the_label(word_tokenizer):
    from tfx_transfer.data.tagging import IGNORED, decode_tagged, encode_tagged

    labels = ["DET", "NOUN", "VERB", "PUNCT", "X"]
    sentence = _sentence(["The", "cats", "running", "don't", "\u200b"], ["DET", "NOUN", "VERB", "X", "PUNCT"])
    split = encode_tagged([sentence], word_tokenizer, 16, labels)
    ids = split.features["input_word_ids"][0]
    v = {t: i for i, t in enumerate(VOCAB)}
    # [CLS] the cat ##s run ##ning don ' t [UNK] [SEP]: the zero-width word keeps a position as [UNK]
    assert ids[:11].tolist() == [v[t] for t in ["[CLS]", "the", "cat", "##s", "run", "##ning", "don", "'", "t",
                                                 "[UNK]", "[SEP]"]]
    assert split.label_ids[0, :11].tolist() == [IGNORED, 0, 1, IGNORED, 2, IGNORED, 4, IGNORED, IGNORED, 3, IGNORED]
    assert split.features["input_mask"][0].sum() == 11
    all_tokens = encode_tagged([sentence], word_tokenizer, 16, labels, label_all_tokens=True)
    assert all_tokens.label_ids[0, :11].tolist() == [IGNORED, 0, 1, 1, 2, 2, 4, 4, 4, 3, IGNORED]
    one_hot = np.eye(len(labels))[np.where(split.label_ids < 0, 0, split.label_ids)]  # perfect logits
    assert decode_tagged(split, one_hot) == [sentence.labels]


def test_long_sentences_split_into_windows_without_losing_a_word(word_tokenizer):
    from tfx_transfer.data.tagging import decode_tagged, encode_tagged

    words = ["cats", "run", "the", "running", "cat", "."] * 3  # 2 + 1 + 1 + 2 + 1 + 1 = 8 pieces per six words
    tags = ["NOUN", "VERB", "DET", "VERB", "NOUN", "PUNCT"] * 3
    labels = ["DET", "NOUN", "PUNCT", "VERB"]
    sentences = [_sentence(words, tags, "long"), _sentence(["the"], ["DET"], "short")]
    split = encode_tagged(sentences, word_tokenizer, 8, labels)  # windows of 6 pieces
    assert len(split) > 3 and split.window_sentence.tolist()[-1] == 1
    assert (split.lengths <= 8).all()
    assert split.first_token.sum() == len(words) + 1  # every word predicted exactly once
    logits = np.eye(len(labels))[np.where(split.label_ids < 0, 0, split.label_ids)]
    assert decode_tagged(split, logits) == [tags, ["DET"]]
    with pytest.raises(ValueError, match="not in the label list"):
        encode_tagged([_sentence(["the"], ["ADJ"])], word_tokenizer, 8, labels)
    unlabelled = encode_tagged([_unlabelled(["the", "cat"])], word_tokenizer, 8)
    assert unlabelled.label_ids is None and unlabelled.first_token.sum() == 2


def _unlabelled(words):
    from tfx_transfer.data.conll import TaggedSentence

    return TaggedSentence("u", list(words))


TOY_LABELS = ["DET", "NOUN", "PUNCT", "VERB"]
TOY_TAGS = {"the": "DET", "cats": "NOUN", "cat": "NOUN", "running": "VERB", "run": "VERB", ".": "PUNCT"}


def _toy_tagging(seed, count, lengths):
    """`count` random sentences over VOCAB's words, each word tagged by TOY_TAGS (a rule a tagger can learn); the
    Keras seed is set too."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    words = list(TOY_TAGS)
    sentences = []
    for i in range(count):
        sentence = [words[j] for j in rng.integers(0, len(words), rng.integers(*lengths))]
        sentences.append(_sentence(sentence, [TOY_TAGS[w] for w in sentence], f"s{i}"))
    return sentences


def _toy_encoder():
    from tfx_transfer import BertEncoder

    return BertEncoder(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, max_position_embeddings=16)


def test_token_loss_averages_over_labelled_tokens_only():
    import keras

    from tfx_transfer.models import token_loss

    logits = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    labels = np.array([[-1, 2, 0, -1], [1, -1, -1, -1]], "int32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([log_p[0, 1, 2], log_p[0, 2, 0], log_p[1, 0, 1]])
    assert float(token_loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    changed = logits.copy()
    changed[labels < 0] = 100.0  # ignored positions do not count
    assert float(token_loss(labels, changed)) == pytest.approx(expected, rel=1e-5)
    assert float(token_loss(np.full((1, 2), -1, "int32"), logits[:1, :2])) == 0.0
    keras.backend.clear_session()


def test_token_classifier_learns_tags_and_round_trips(word_tokenizer, tmp_path):
    """A tiny BertTokenClassifier fitted on encode_tagged windows learns a word -> tag rule; decode_tagged reads its
    predictions back per word; .keras save/load keeps the logits."""
    import keras

    from tfx_transfer.data.tagging import decode_tagged, encode_tagged
    from tfx_transfer.models import BertTokenClassifier

    sentences = _toy_tagging(seed=0, count=48, lengths=(2, 7))
    split = encode_tagged(sentences, word_tokenizer, 12, TOY_LABELS)
    model = BertTokenClassifier(_toy_encoder(), len(TOY_LABELS))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(split.features, split.label_ids, batch_size=16, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    predicted = decode_tagged(split, model.predict(split.features, verbose=0))
    gold = [s.labels for s in sentences]
    assert token_accuracy(gold, predicted) > 0.95
    path = tmp_path / "tagger.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    batch = {k: v[:4] for k, v in split.features.items()}
    np.testing.assert_allclose(np.asarray(loaded(batch)), np.asarray(model(batch)), atol=1e-6)


def test_tagging_trains_through_the_resumable_trainer_on_length_grouped_batches(word_tokenizer, tmp_path):
    """TaggedSplit.as_encoded() feeds jobs.trainer: per-token labels are cut and padded (-1) with each batch's
    length, the step trains, per-token prediction comes back in file order for decode_tagged."""
    from tfx_transfer.adaptation.optimizers import create_optimizer
    from tfx_transfer.data.pipeline import dataset, plan_batches
    from tfx_transfer.data.tagging import decode_tagged, encode_tagged
    from tfx_transfer.jobs import trainer
    from tfx_transfer.models import BertTokenClassifier

    sentences, labels = _toy_tagging(seed=1, count=64, lengths=(1, 9)), TOY_LABELS
    split = encode_tagged(sentences, word_tokenizer, 16, labels).as_encoded()
    plan = plan_batches(split.lengths, 8, 16, shuffle=True, seed=0, epoch=0, padding="longest")
    (inputs, targets), = dataset(split, plan[:1]).take(1)
    assert targets.shape == inputs["input_word_ids"].shape and targets.shape[1] < 16  # cut to the batch's length
    assert (np.asarray(targets)[np.asarray(inputs["input_mask"]) == 0] == -1).all()
    model = BertTokenClassifier(_toy_encoder(), len(labels))
    model.compile(optimizer=create_optimizer(1e-2, num_train_steps=80, warmup_steps=4))
    result = trainer.train(model, split, epochs=10, batch_size=8, max_seq_length=16, seed=0,
                           checkpoint_dir=str(tmp_path / "checkpoints"), save_every_steps=0, verbose=0)
    assert result["steps"] == 80 and result["mean_padded_length"] < 16
    tagged = encode_tagged(sentences, word_tokenizer, 16, labels)
    logits = trainer.predict(model, split, batch_size=8, max_seq_length=16, per_token=True)
    assert logits.shape == (len(split), 16, len(labels))
    assert token_accuracy([s.labels for s in sentences], decode_tagged(tagged, logits)) > 0.95
