"""Tokenizer and packer: ids equal google-research/bert's algorithm and the tensorflow-text / keras-hub tokenizers."""

import csv
import random
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from reference_tokenizer import reference_ids, truncate_seq_pair
from tfx_transfer.text import BertPacker, BertPreprocessor, BertTokenizer, load_vocab

# Fragments combined into varied test strings. NFKC_SENSITIVE ones are where tensorflow-text's NFKC case folding
# (used by its BertTokenizer and by keras-hub) departs from BERT's reference normalisation (Python str.lower +
# NFD + strip Mn): compatibility characters, "ß", the final sigma, control characters.
PLAIN = ["Hello", "world", "The quick brown fox", "jumps over the lazy dog", "don't", "can't", "U.S.A.", "e-mail",
         "$100.00", "50%", "@user", "#hashtag", "<html>", "C++", "3.14159", "(parenthesis)", "[brackets]",
         "\"quotes\"", "it's", "co-operate", "well...", "!?", "a/b", "x_y", "under_score", "naïve", "résumé",
         "Café", "crème brûlée", "Ünïcödé", "ÀÉÎÕÜ", "façade", "Zürich", "São Paulo", "東京", "日本語のテキスト",
         "中文字符", "ไทย", "Привет", "мир", "Ελληνικά", "العربية", "עברית", "हिन्दी", "😀", "🤖🚀",
         "—", "–", "«guillemets»", "¿qué?", "¡hola!", "tab\there", "new\nline",
         "a\u0301", "x" * 101, "supercalifragilisticexpialidocious",
         "antidisestablishmentarianism", "MiXeD CaSe", "ALL CAPS", "İstanbul", "unaffable", "12345", "1,000,000"]
# keras-hub's WordPieceTokenizer also departs on these (no NFD for Hangul, Unicode whitespace, format characters).
KERAS_HUB_DIVERGENT = ["한국어", "\u00a0nbsp", "\u2003em", "soft\u00adhyphen", "zero\u200bwidth"]
NFKC_SENSITIVE = ["…", "ΟΔΟΣ", "ß", "straße", "ﬁ", "ﬀ", "x²", "ｆｕｌｌ", "Ⅳ", "①", "Ǆ", "\x00null", "bell\x07", "\ufffd", "µ", "ſ"]


def _strings(fragments, count, seed):
    rng = random.Random(seed)
    out = [""]
    for _ in range(count):
        out.append(" ".join(rng.choice(fragments) for _ in range(rng.randint(1, 6))))
    return out


VARIED = _strings(PLAIN, 250, 0)
VARIED_TF_TEXT = VARIED + _strings(PLAIN + KERAS_HUB_DIVERGENT, 100, 2)
VARIED_WITH_EDGE_CASES = VARIED_TF_TEXT + _strings(PLAIN + NFKC_SENSITIVE, 150, 1) + NFKC_SENSITIVE + [
    "   ", "\t\n", "Ё" * 60, "a" + "é" * 100, "ΟΔΟΣ ΣΑΣ.", "word " * 300]


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return BertTokenizer.from_pretrained(minilm_dir)


def _ids(tokenizer, strings):
    return tokenizer.tokenize(tf.constant(strings)).to_list()


def test_ids_equal_google_reference_algorithm(tokenizer):
    ours = _ids(tokenizer, VARIED_WITH_EDGE_CASES)
    for text, ids in zip(VARIED_WITH_EDGE_CASES, ours):
        assert ids == reference_ids(text, tokenizer.vocab, True, tokenizer.max_chars_per_word), repr(text)


def test_cased_mode_equals_reference(minilm_dir):
    with pytest.warns(UserWarning, match="the vocabulary is uncased"):  # MiniLM's vocab is uncased; fine for this test
        cased = BertTokenizer(f"{minilm_dir}/vocab.txt", do_lower_case=False)
    strings = VARIED_WITH_EDGE_CASES[:200]
    for text, ids in zip(strings, _ids(cased, strings)):
        assert ids == reference_ids(text, cased.vocab, False, cased.max_chars_per_word), repr(text)


def test_ids_equal_tensorflow_text_bert_tokenizer(tokenizer):
    import tensorflow_text as tf_text

    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(tokenizer.vocab, tf.range(tokenizer.vocab_size, dtype=tf.int64)), 1)
    reference = tf_text.BertTokenizer(table, lower_case=True, token_out_type=tf.int32)
    expected = reference.tokenize(tf.constant(VARIED_TF_TEXT)).merge_dims(-2, -1).to_list()
    assert _ids(tokenizer, VARIED_TF_TEXT) == expected


def test_ids_equal_keras_hub_wordpiece(tokenizer):
    import keras_hub

    reference = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=tokenizer.vocab_file, lowercase=True,
                                                        strip_accents=True, oov_token="[UNK]")
    expected = [list(map(int, ids)) for ids in reference(tf.constant(VARIED))]
    assert _ids(tokenizer, VARIED) == expected


def test_where_peers_differ_we_keep_the_reference_ids(tokenizer):
    """Where tensorflow-text's NFKC case-fold or keras-hub's normalisation change ids, we keep BERT's reference."""
    import keras_hub
    import tensorflow_text as tf_text

    fast = tf_text.FastBertTokenizer(vocab=tokenizer.vocab, lower_case_nfd_strip_accents=True,
                                     token_out_type=tf.int32)
    theirs = fast.tokenize(tf.constant(NFKC_SENSITIVE)).to_list()
    ours = _ids(tokenizer, NFKC_SENSITIVE)
    assert sum(a != b for a, b in zip(ours, theirs)) >= 10
    assert ours == [reference_ids(t, tokenizer.vocab) for t in NFKC_SENSITIVE]

    hub = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=tokenizer.vocab_file, lowercase=True,
                                                  strip_accents=True, oov_token="[UNK]")
    theirs = [list(map(int, ids)) for ids in hub(tf.constant(KERAS_HUB_DIVERGENT))]
    ours = _ids(tokenizer, KERAS_HUB_DIVERGENT)
    assert all(a != b for a, b in zip(ours, theirs))
    assert ours == [reference_ids(t, tokenizer.vocab) for t in KERAS_HUB_DIVERGENT]


def test_ids_equal_hugging_face_tokenizer_on_real_data(tokenizer, minilm_dir, shared_data):
    tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is a test extra")
    hf = tokenizers.Tokenizer.from_file(f"{minilm_dir}/tokenizer.json")
    hf.no_padding()
    hf.no_truncation()
    with open(shared_data / "glue_data/SST-2/dev.tsv", encoding="utf-8") as f:
        sst = [row[0] for row in list(csv.reader(f, delimiter="\t"))[1:]]
    with open(shared_data / "glue_data/MRPC/dev.tsv", encoding="utf-8-sig") as f:
        mrpc = [row[3] for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    strings = sst + mrpc
    assert len(strings) > 1000
    assert _ids(tokenizer, strings) == [hf.encode(s, add_special_tokens=False).ids for s in strings]


def test_tokenizer_accepts_scalars_and_runs_in_tf_data(tokenizer):
    assert tokenizer.tokenize("Hello, world!").to_list() == [[7592, 1010, 2088, 999]]
    assert tokenizer.convert_ids_to_tokens([7592, 1010, 2088, 999]) == ["hello", ",", "world", "!"]
    ds = tf.data.Dataset.from_tensor_slices(["Hello, world!", "héllo"]).batch(2).map(tokenizer.tokenize)
    assert next(iter(ds)).to_list() == [[7592, 1010, 2088, 999], [7592]]


# ---------------------------------------------------------------------------------------------- packer
def _pack(pre, a, b=None):
    out = pre(a, b)
    return {k: v.numpy() for k, v in out.items()}


def test_packer_single_and_pair_layout(tokenizer):
    pre = BertPreprocessor(tokenizer, seq_length=12)
    out = _pack(pre, ["Hello world", ""], ["a cat", "dog"])
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    hello, world, a, cat, dog = (tokenizer.token_to_id(t) for t in ("hello", "world", "a", "cat", "dog"))
    np.testing.assert_array_equal(out["input_word_ids"][0], [cls, hello, world, sep, a, cat, sep, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out["input_type_ids"][0], [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out["input_mask"][0], [1] * 7 + [0] * 5)
    # Empty first text: [CLS] [SEP] dog [SEP]
    np.testing.assert_array_equal(out["input_word_ids"][1][:4], [cls, sep, dog, sep])
    single = _pack(pre, [""])
    np.testing.assert_array_equal(single["input_word_ids"][0][:3], [cls, sep, 0])
    assert all(v.dtype == np.int32 and v.shape == (1, 12) for v in single.values())


def test_packer_truncation_equals_google_truncate_seq_pair():
    rng = np.random.default_rng(0)
    seq_length = 16
    packer = BertPacker(seq_length, cls_id=101, sep_id=102)
    for _ in range(40):
        len_a, len_b = rng.integers(0, 30, size=2)
        a = list(range(1000, 1000 + len_a))
        b = list(range(2000, 2000 + len_b))
        out = packer([tf.ragged.constant([a], dtype=tf.int32), tf.ragged.constant([b], dtype=tf.int32)])
        ta, tb = truncate_seq_pair(a, b, seq_length - 3)
        expected = [101] + ta + [102] + tb + [102]
        expected += [0] * (seq_length - len(expected))
        np.testing.assert_array_equal(out["input_word_ids"].numpy()[0], expected)


def test_very_long_input_is_truncated(tokenizer):
    pre = BertPreprocessor(tokenizer, seq_length=32)
    out = _pack(pre, ["word " * 5000])
    assert out["input_word_ids"].shape == (1, 32)
    assert out["input_word_ids"][0, -1] == tokenizer.sep_id and out["input_mask"].sum() == 32


def test_pad_to_longest_in_batch(tokenizer):
    pre = BertPreprocessor(tokenizer, seq_length=64, pad_to_max_length=False)
    out = _pack(pre, ["short", "a somewhat longer sentence here"])
    longest = len(reference_ids("a somewhat longer sentence here", tokenizer.vocab)) + 2
    assert out["input_word_ids"].shape == (2, longest)
    assert out["input_mask"][1].sum() == longest


def test_packer_rejects_bad_lengths():
    with pytest.raises(ValueError, match="seq_length=2 must be an integer >= 3"):
        BertPacker(2, 101, 102)
    with pytest.raises(ValueError, match="leaves no room for 2 segments"):
        BertPacker(4, 101, 102)([tf.ragged.constant([[1]]), tf.ragged.constant([[2]])])


# ---------------------------------------------------------------------------------------------- vocab
@pytest.mark.parametrize("lines, message", [
    ([], "empty"),
    (["[PAD]", "[UNK]", "[CLS]"], r"lacks the special token\(s\) \['\[SEP\]'\]"),
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "a"], "token 'a' appears on lines 5 and 6"),
])
def test_vocab_errors(tmp_path, lines, message):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_vocab(path)
    with pytest.raises(FileNotFoundError, match="Vocabulary file not found"):
        load_vocab(tmp_path / "missing.txt")


def test_accent_stripping_is_unicode_mn_only():
    # Sanity check of the reference itself: NFD + drop Mn is what "strip accents" means in BERT.
    assert "".join(c for c in unicodedata.normalize("NFD", "crème") if unicodedata.category(c) != "Mn") == "creme"
