"""run_pretraining.py: corpus reading and packing, google-research/bert's masking statistics, the masked-LM model's
loss, and the job end to end (train -> eval -> final/ fine-tuned by run_classifier.py)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from conftest import TINY, WORDS
from tfx_transfer import BertEncoder
from tfx_transfer.data.masking import IGNORED, MaskingConfig, mask_batch
from tfx_transfer.data.pretraining import CorpusError, pack_documents, read_documents
from tfx_transfer.jobs import classifier, pretraining
from tfx_transfer.models.masked_lm import BertMaskedLM
from tfx_transfer.text.tokenizer import BertTokenizer

FLAGS = flags.FLAGS
if "masked_lm_prob" not in FLAGS:
    pretraining.define_flags()
if "student_layers" not in FLAGS:
    classifier.define_flags()

V, MASK, CLS, SEP, PAD = 100, 4, 2, 3, 0
CONTINUATION = np.arange(V) >= 60  # ids 60.. are "##" pieces


def _config(**kwargs):
    return MaskingConfig(mask_id=MASK, vocab_size=V, special_ids=(CLS, SEP, PAD), continuation=CONTINUATION,
                         **kwargs)


def _batch(rng, rows=400, width=60):
    lengths = rng.integers(8, width + 1, rows)
    ids = rng.integers(5, V, (rows, width))
    mask = (np.arange(width)[None] < lengths[:, None]).astype(np.int32)
    ids[np.arange(rows), lengths - 1] = SEP
    ids[:, 0] = CLS
    return np.where(mask == 1, ids, PAD).astype(np.int32), mask, lengths


def test_read_documents_and_errors(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("First doc one.\nFirst doc two.\n\n\n  \nSecond doc.\n", encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text("Third doc.", encoding="utf-8")
    assert read_documents([str(corpus), str(other)]) == [["First doc one.", "First doc two."], ["Second doc."],
                                                          ["Third doc."]]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(CorpusError, match=r"bad.txt:2: not UTF-8"):
        read_documents([str(bad)])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no text"):
        read_documents([str(empty)])
    with pytest.raises(CorpusError, match="no such file"):
        read_documents([str(tmp_path / "missing.txt")])


def test_pack_documents_keeps_sentences_and_documents(tiny_model):
    tokenizer = BertTokenizer.from_pretrained(tiny_model)
    a, b, c = "good movie", "bad plot fun dull", "great"
    long = " ".join(["awful"] * 13)
    split = pack_documents([[a, b, c], [long], [c]], tokenizer, max_seq_length=8)
    rows = [tokenizer.convert_ids_to_tokens(r[:n]) for r, n in zip(split.word_ids, split.lengths)]
    assert rows == [["[CLS]", "good", "movie", "bad", "plot", "fun", "dull", "[SEP]"], ["[CLS]", "great", "[SEP]"],
                    ["[CLS]"] + ["awful"] * 6 + ["[SEP]"], ["[CLS]"] + ["awful"] * 6 + ["[SEP]"],
                    ["[CLS]", "awful", "[SEP]"], ["[CLS]", "great", "[SEP]"]]  # whole sentences; never across documents
    assert np.array_equal(split.labels, split.word_ids)


def test_masking_follows_google_research_bert():
    rng = np.random.default_rng(0)
    ids, mask, lengths = _batch(rng)
    config = _config(rate=0.15, max_predictions=5, seed=3)
    masked, labels = (t.numpy() for t in mask_batch(ids, mask, config, epoch=0, position=0))
    chosen = labels != IGNORED
    budget = np.minimum(5, np.maximum(1, np.round(lengths * 0.15))).astype(int)
    assert np.array_equal(chosen.sum(axis=1), budget)  # exactly n predictions per sequence
    assert not chosen[(ids == CLS) | (ids == SEP) | (mask == 0)].any()  # never special tokens or padding
    assert np.array_equal(labels[chosen], ids[chosen]) and np.array_equal(masked[~chosen], ids[~chosen])
    total = chosen.sum()
    as_mask, kept = (masked[chosen] == MASK).mean(), (masked[chosen] == ids[chosen]).mean()
    assert abs(as_mask - 0.8) < 0.03 and abs(kept - 0.1 - 0.01) < 0.03, (as_mask, kept, total)  # kept: 10% + chance
    # Positions are uniform over candidates: the first and the second half of real tokens get their share.
    again, _ = mask_batch(ids, mask, config, epoch=0, position=0)
    assert np.array_equal(again.numpy(), masked)  # a function of (seed, epoch, position)
    next_epoch = mask_batch(ids, mask, config, epoch=1, position=0)[1].numpy()
    static = mask_batch(ids, mask, _config(rate=0.15, max_predictions=5, seed=3, dynamic=False), 1, 0)[1].numpy()
    static_0 = mask_batch(ids, mask, _config(rate=0.15, max_predictions=5, seed=3, dynamic=False), 0, 0)[1].numpy()
    assert not np.array_equal(next_epoch, labels) and np.array_equal(static, static_0)
    assert not np.array_equal(mask_batch(ids, mask, config, 0, 1)[1].numpy(), labels)


def test_static_masks_follow_the_sequence_not_its_batch_position():
    """Static masking: a sequence's masks are the same in every epoch although the epochs put it in other batches, at
    other rows, padded to other lengths (before, they were a function of the batch position: new every epoch)."""
    rng = np.random.default_rng(4)
    ids, mask, lengths = _batch(rng, rows=64, width=30)
    config = _config(rate=0.2, max_predictions=6, seed=5, dynamic=False)
    masked, labels = (t.numpy() for t in mask_batch(ids, mask, config, epoch=0, position=0))
    order = rng.permutation(len(ids))
    wider = lambda a: np.pad(a, [[0, 0], [0, 9]])  # noqa: E731 (padded 9 tokens further)
    masked_2, labels_2 = (t.numpy() for t in mask_batch(wider(ids[order]), wider(mask[order]), config, epoch=3,
                                                         position=17))
    assert np.array_equal(labels_2[:, :30], labels[order]) and np.array_equal(masked_2[:, :30], masked[order])
    assert (labels_2[:, 30:] == IGNORED).all()
    other_seed = mask_batch(ids, mask, dataclasses.replace(config, seed=6), 0, 0)[1].numpy()
    assert not np.array_equal(other_seed, labels)
    assert np.array_equal((labels != IGNORED).sum(axis=1), np.minimum(6, np.maximum(1, np.round(lengths * 0.2))))


def test_whole_word_masking_takes_whole_words():
    rng = np.random.default_rng(1)
    ids, mask, lengths = _batch(rng)
    masked, labels = (t.numpy() for t in mask_batch(ids, mask, _config(rate=0.2, max_predictions=8,
                                                                         whole_word=True), 0, 0))
    chosen = labels != IGNORED
    budget = np.minimum(8, np.maximum(1, np.round(lengths * 0.2))).astype(int)
    assert (chosen.sum(axis=1) <= budget).all() and chosen.sum() > 0.9 * budget.sum()
    for row in range(len(ids)):
        real = np.flatnonzero((mask[row] == 1) & (ids[row] != CLS) & (ids[row] != SEP))
        words, current = [], []
        for t in real:  # a word: a non-"##" piece and the "##" pieces after it
            if current and not CONTINUATION[ids[row, t]]:
                words.append(current)
                current = []
            current.append(t)
        words.append(current)
        for word in words:
            assert len(set(chosen[row, word])) == 1, (row, word)  # all of a word's pieces, or none


def test_masked_lm_model_predicts_the_chosen_positions():
    tf.keras.utils.set_random_seed(0)
    encoder = BertEncoder(**TINY)
    model = BertMaskedLM(encoder, max_predictions=3)
    assert sorted(v.path for v in model.masked_lm.weights) == [
        "masked_lm/layer_norm/beta", "masked_lm/layer_norm/gamma", "masked_lm/output_bias",
        "masked_lm/transform/bias", "masked_lm/transform/kernel"]
    ids = np.array([[2, 10, 11, 12, 13, 3], [2, 20, 21, 3, 0, 0]], np.int32)
    mask = (ids != 0).astype(np.int32)
    labels = np.array([[-1, 10, -1, 12, -1, -1], [-1, -1, 21, -1, -1, -1]], np.int32)
    inputs = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": np.zeros_like(ids)}
    sequence = model(inputs)
    logits, targets, weights = (np.asarray(t) for t in model.predictions(sequence, labels))
    full = np.asarray(model.masked_lm(sequence))  # [B, T, V]
    np.testing.assert_allclose(logits[0, :2], full[0, [1, 3]], atol=1e-5)
    np.testing.assert_allclose(logits[1, :1], full[1, [2]], atol=1e-5)
    # K = the most predictions of a row (2), at most max_predictions (3)
    assert targets.tolist() == [[10, 12], [21, 0]] and weights.tolist() == [[1, 1], [1, 0]]
    log_p = full - np.log(np.exp(full).sum(-1, keepdims=True))
    expected = -(log_p[0, 1, 10] + log_p[0, 3, 12] + log_p[1, 2, 21]) / 3
    assert float(model.compute_loss(inputs, labels, sequence)) == pytest.approx(expected, abs=1e-5)


def _run(job, argv):
    FLAGS.unparse_flags()
    FLAGS([f"{job.__name__}.py"] + argv)
    return job.main([f"{job.__name__}.py"])


def _corpus(path, rng, documents=30):
    """Sentences of consecutive vocabulary words (a masked word follows from its neighbours: learnable)."""
    lines = []
    for _ in range(documents):
        for _ in range(rng.integers(1, 4)):
            start = rng.integers(0, len(WORDS) - 9)
            lines.append(" ".join(WORDS[start:start + rng.integers(3, 9)]))
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_run_pretraining_then_fine_tune_from_it(tiny_model, tmp_path, capsys):
    rng = np.random.default_rng(2)
    train, held_out = tmp_path / "train.txt", tmp_path / "held_out.txt"
    _corpus(train, rng)
    _corpus(held_out, rng, documents=10)
    out = tmp_path / "tapt"
    base = [f"--pretrained={tiny_model}", f"--output_dir={out}", "--max_seq_length=24", "--train_batch_size=8",
            "--eval_batch_size=8", "--save_checkpoints_steps=1000"]
    assert _run(pretraining, [*base, "--do_train"]) == 2
    assert "--do_train needs --input_file" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good movie\n\xff\n")
    assert _run(pretraining, [*base, "--do_train", f"--input_file={bad}"]) == 2
    assert "bad.txt:2: not UTF-8" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()

    assert _run(pretraining, [*base, "--do_eval", f"--eval_file={held_out}"]) == 0
    before = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert _run(pretraining, [*base, "--do_train", "--do_eval", f"--input_file={train}", f"--eval_file={held_out}",
                              "--num_train_epochs=8", "--learning_rate=5e-3", "--whole_word_masking"]) == 0
    after = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert set(after) == {"masked_lm_accuracy", "masked_lm_loss", "eval_sequences", "eval_predictions",
                          "global_step"}
    assert after["eval_predictions"] == before["eval_predictions"]  # the same held-out masks
    assert float(after["masked_lm_loss"]) < float(before["masked_lm_loss"]) - 0.5, (before, after)
    assert (out / "final" / "model.keras").is_file()

    data = tmp_path / "SST-2"
    data.mkdir()
    rows = [f"{' '.join(rng.choice(WORDS, 5))}\t{i % 2}" for i in range(16)]
    for split in ("train", "dev"):
        (data / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert _run(classifier, ["--task_name=SST-2", f"--data_dir={data}", f"--init_checkpoint={out / 'final'}",
                             f"--output_dir={tmp_path / 'cls'}", "--do_train", "--do_eval", "--max_seq_length=16",
                             "--train_batch_size=8", "--num_train_epochs=1", "--label_column=1"]) == 0
    assert "eval_accuracy" in (tmp_path / "cls" / "eval_results.txt").read_text()


def _pretrain_small(tiny_model, tmp_path, seed, name, *flags_):
    """run_pretraining.py --do_train on 16 generated documents into tmp_path/name; returns that directory."""
    train = tmp_path / "train.txt"
    _corpus(train, np.random.default_rng(seed), documents=16)
    out = tmp_path / name
    assert _run(pretraining, [f"--pretrained={tiny_model}", f"--output_dir={out}", "--do_train",
                              f"--input_file={train}", "--max_seq_length=24", "--train_batch_size=8", *flags_]) == 0
    return out


def test_head_warmup_trains_the_head_alone(tiny_model, tmp_path):
    import keras

    out = _pretrain_small(tiny_model, tmp_path, 4, "warm", "--num_train_epochs=2", "--learning_rate=5e-3",
                          "--head_warmup_steps=100")
    trained = keras.models.load_model(str(out / "final" / "model.keras"))
    start = BertEncoder.from_pretrained(tiny_model)
    assert all(np.array_equal(a, b) for a, b in zip(start.weights, trained.encoder.weights))  # frozen throughout
    assert np.abs(trained.masked_lm.transform.kernel.numpy()).sum() > 0
    assert np.abs(trained.masked_lm.output_bias.numpy()).max() > 1e-3  # the head trained (it starts at zero bias)


def test_domain_adapters_pretrain_into_an_adapter_file(tiny_model, tmp_path):
    out = _pretrain_small(tiny_model, tmp_path, 5, "adapters", "--num_train_epochs=1", "--learning_rate=1e-3",
                          "--adaptation=adapters", "--adapter_size=4", "--head_warmup_steps=0")
    assert (out / "final" / "adapter.safetensors").is_file() and (out / "final" / "task.json").is_file()


@pytest.mark.parametrize("streaming", [[], ["--streaming=on", "--shuffle_buffer=16"]], ids=["in_memory", "streamed"])
def test_interrupted_pretraining_resumes_to_the_same_weights(tiny_model, tmp_path, streaming):
    """SIGTERM after the first checkpoint (mid-epoch: the batch positions of the masks continue from the offset),
    then the same command: the weights of an uninterrupted run (dynamic masks over 2 epochs, head warm-up). Streamed:
    the resumed run skips the stream's batches it trained on, across the shuffle buffer and the pass boundary."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import keras

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    train = tmp_path / "train.txt"
    _corpus(train, np.random.default_rng(6), documents=48)

    def command(out):
        return [sys.executable, os.path.join(repo, "run_pretraining.py"), f"--pretrained={tiny_model}",
                f"--output_dir={out}", "--do_train", f"--input_file={train}", "--max_seq_length=24",
                "--train_batch_size=4", "--num_train_epochs=2", "--learning_rate=1e-3", "--save_checkpoints_steps=3",
                "--seed=5", "--whole_word_masking", *streaming]

    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True, cwd=repo)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, cwd=repo)
    checkpoints, deadline = interrupted / "checkpoints", time.time() + 120
    while time.time() < deadline and not (checkpoints.is_dir() and any(
            n.startswith("ckpt-") for n in os.listdir(checkpoints))):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and not (interrupted / "final").exists(), stderr[-2000:]
    resumed = subprocess.run(command(interrupted), env=env, capture_output=True, text=True, cwd=repo)
    assert resumed.returncode == 0 and "Resuming training from" in resumed.stderr, resumed.stderr[-2000:]
    load = lambda out: keras.models.load_model(str(out / "final" / "model.keras")).weights  # noqa: E731
    for a, b in zip(load(tmp_path / "whole"), load(interrupted)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    import hashlib
    import json

    card = json.loads((interrupted / "final" / "model_card.json").read_text())
    assert [(d["role"], d["sha256"]) for d in card["data"]] == [("train", hashlib.sha256(train.read_bytes()).hexdigest())]


def test_producers_masked_lm_heads_load_and_reproduce_their_logits():
    """transformers' BertForMaskedLM (tests/fixtures/hf/masked_lm: its MLM logits at positions 1 and 2) and
    google-research/bert's run_pretraining checkpoint (cls/predictions/*) load into BertMaskedLM with their heads."""
    from fixture_utils import TOLERANCE, expected, inputs, max_difference, path
    from tfx_transfer.checkpoints import load_checkpoint
    from tfx_transfer.config import BertConfig
    from tfx_transfer.pretrained import resolve_pretrained

    for fixture, config in (("hf/masked_lm", resolve_pretrained(path("hf/masked_lm")).config),
                            ("google/pretraining", BertConfig.from_json_file(path("google/pretraining/bert_config.json")))):
        model = BertMaskedLM(BertEncoder.from_bert_config(config))
        report = load_checkpoint(model, path(fixture), allow_missing=(r"pooler/.*",), heads=True)
        loaded = sorted(item.target for item in report.loaded if item.target.startswith("masked_lm/"))
        assert loaded == sorted(v.path for v in model.masked_lm.weights), (fixture, report)
    stored = expected("hf/masked_lm")
    model = BertMaskedLM(BertEncoder.from_bert_config(resolve_pretrained(path("hf/masked_lm")).config))
    load_checkpoint(model, path("hf/masked_lm"), allow_missing=(r"pooler/.*",), heads=True)
    logits = np.asarray(model.masked_lm(model(inputs(stored))))[:, 1:3]
    assert max_difference(logits, stored["mlm_logits"]) <= TOLERANCE


def test_producers_next_sentence_and_model_garden_heads_load_and_reproduce_their_logits():
    """transformers' BertForPreTraining (hf/pretraining: masked-LM and next-sentence logits), Model Garden's
    BertPretrainerV2 (model_garden/bert_pretrainer: trainer checkpoint and checkpoint_items; its own next-sentence
    head has an extra dense layer and is discarded) and google-research/bert's cls/seq_relationship reproduce the
    producers' logits in BertMaskedLM."""
    import tensorflow as tf

    from fixture_utils import TOLERANCE, expected, inputs, max_difference, path
    from tfx_transfer.checkpoints import load_checkpoint
    from tfx_transfer.config import BertConfig
    from tfx_transfer.pretrained import resolve_pretrained

    stored = expected("hf/pretraining")
    model = BertMaskedLM(BertEncoder.from_bert_config(resolve_pretrained(path("hf/pretraining")).config),
                         next_sentence=True)
    report = load_checkpoint(model, path("hf/pretraining"), heads=True)
    assert not report.unused_in_checkpoint and not report.missing_in_checkpoint, report
    outputs = model(inputs(stored))
    assert max_difference(outputs["next_sentence"], stored["next_sentence_logits"]) <= TOLERANCE
    assert max_difference(model.masked_lm(outputs["sequence_output"])[:, 1:3], stored["mlm_logits"]) <= TOLERANCE

    google_config = BertConfig.from_json_file(path("google/pretraining/bert_config.json"))
    stored = expected("model_garden/bert_pretrainer")
    for checkpoint in ("model_garden/bert_pretrainer", "model_garden/bert_pretrainer/checkpoint_items"):
        model = BertMaskedLM(BertEncoder.from_bert_config(google_config))
        report = load_checkpoint(model, path(checkpoint), allow_missing=(r"pooler/.*",), heads=True)
        assert sorted(i.target for i in report.loaded if i.target.startswith("masked_lm/")) == sorted(
            v.path for v in model.masked_lm.weights), (checkpoint, report)
        assert any("next_sentence/pooler_dense" in u.name for u in report.unused_in_checkpoint), report
        sequence = model(inputs(stored))
        logits = model.masked_lm(tf.gather(sequence, stored["masked_lm_positions"], batch_dims=1))
        assert max_difference(logits, stored["mlm_logits"]) <= TOLERANCE, checkpoint

    stored = expected("google/pretraining")
    model = BertMaskedLM(BertEncoder.from_bert_config(google_config), next_sentence=True)
    load_checkpoint(model, path("google/pretraining"), heads=True)
    reader = tf.train.load_checkpoint(path("google/pretraining/bert_model.ckpt"))
    by_google = (stored["pooled_output"] @ reader.get_tensor("cls/seq_relationship/output_weights").T
                 + reader.get_tensor("cls/seq_relationship/output_bias"))  # get_next_sentence_output's logits
    assert max_difference(model(inputs(stored))["next_sentence"], by_google) <= TOLERANCE
    name_based = BertMaskedLM(BertEncoder.from_bert_config(google_config))
    load_checkpoint(name_based, path("model_garden/name_based"), heads=True)  # Model Garden's conversion of it
    for ours, theirs in zip(name_based.masked_lm.weights, model.masked_lm.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_next_sentence_pairs_are_google_research_berts():
    """google/next_sentence_pairs: create_pretraining_data.create_instances_from_document's pairs (its own code and
    random draws) for 7 (seed, max_seq_length, short_seq_prob) cases, truncation and short targets included; ours
    are the same pairs, token for token."""
    import json

    from fixture_utils import path
    from tfx_transfer.data.pretraining import RANDOM_NEXT, pair_documents

    stored = json.load(open(path("google/next_sentence_pairs/pairs.json"), encoding="utf-8"))
    documents = stored["documents"]
    for case in stored["cases"]:
        ours = pair_documents(documents, case["max_seq_length"] - 3, case["seed"], case["short_seq_prob"])
        theirs = [(p["tokens_a"], p["tokens_b"], RANDOM_NEXT if p["is_random_next"] else 0) for p in case["pairs"]]
        assert ours == theirs, case["seed"]
    assert {p["is_random_next"] for c in stored["cases"] for p in c["pairs"]} == {True, False}


def test_next_sentence_pairs_encode_segments_and_refuse_one_sentence_documents(tiny_model):
    from tfx_transfer.data.pretraining import IS_NEXT, RANDOM_NEXT, next_sentence_pairs

    tokenizer = BertTokenizer.from_pretrained(tiny_model)
    rng = np.random.default_rng(3)
    documents = [[" ".join(rng.choice(WORDS, rng.integers(2, 7))) for _ in range(rng.integers(2, 6))]
                 for _ in range(60)]
    split = next_sentence_pairs(documents, tokenizer, 24, seed=1)
    assert set(split.labels) == {IS_NEXT, RANDOM_NEXT} and 0.3 < split.labels.mean() < 0.7
    assert split.lengths.max() <= 24
    for ids, types, length in zip(split.word_ids, split.type_ids, split.lengths):
        seps = np.flatnonzero(ids[:length] == tokenizer.sep_id)
        assert ids[0] == tokenizer.cls_id and len(seps) == 2 and seps[1] == length - 1 and seps[0] >= 2
        assert (types[:seps[0] + 1] == 0).all() and (types[seps[0] + 1:length] == 1).all()
        assert (ids[length:] == tokenizer.pad_id).all()
    again = next_sentence_pairs(documents, tokenizer, 24, seed=1)
    assert np.array_equal(again.word_ids, split.word_ids)  # drawn from the seed
    with pytest.raises(ValueError, match="two or more sentences"):
        next_sentence_pairs([["one sentence"], ["another one"]], tokenizer, 24, seed=1)


def test_run_pretraining_with_next_sentence_prediction(tiny_model, tmp_path, capsys):
    """--next_sentence_prediction end to end: the pairs train both heads, eval_results.txt reports both tasks,
    final/ keeps the head; one-line errors for one-sentence documents and a streamed corpus."""
    import keras

    rng = np.random.default_rng(8)
    train, held_out, single = tmp_path / "train.txt", tmp_path / "held_out.txt", tmp_path / "single.txt"
    _corpus(train, rng, documents=24)
    _corpus(held_out, rng, documents=8)
    single.write_text("one sentence\n\nanother document\n", encoding="utf-8")
    out = tmp_path / "nsp"
    base = [f"--pretrained={tiny_model}", f"--output_dir={out}", "--max_seq_length=24", "--train_batch_size=8",
            "--eval_batch_size=8", "--save_checkpoints_steps=1000", "--next_sentence_prediction", "--do_train"]
    assert _run(pretraining, [*base, f"--input_file={single}"]) == 2
    assert "two or more sentences" in capsys.readouterr().err
    assert _run(pretraining, [*base, f"--input_file={train}", "--streaming=on"]) == 2
    assert "does not combine with a streamed corpus" in capsys.readouterr().err
    assert not (out / "checkpoints").exists()
    assert _run(pretraining, [*base, "--do_eval", f"--input_file={train}", f"--eval_file={held_out}",
                              "--num_train_epochs=2", "--learning_rate=1e-3"]) == 0
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert {"next_sentence_accuracy", "next_sentence_loss", "masked_lm_accuracy"} <= set(results)
    assert 0 <= float(results["next_sentence_accuracy"]) <= 1 and float(results["next_sentence_loss"]) > 0
    trained = keras.models.load_model(str(out / "final" / "model.keras"))
    hidden = trained.encoder.bert_config.hidden_size
    assert trained.next_sentence and trained.get_layer("next_sentence").kernel.shape == (hidden, 2)
    start = BertEncoder.from_pretrained(tiny_model)
    assert not np.array_equal(start.get_layer("pooler").weights[0], trained.encoder.get_layer("pooler").weights[0])
