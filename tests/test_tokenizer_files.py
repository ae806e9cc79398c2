"""Tokenizer settings read from each producer's files (`tfx_transfer.text.tokenizer_files`), starting from the real
transformers 5 and keras-hub files in tests/fixtures and breaking copies of them."""

import json
import os
import shutil

import pytest

from fixture_utils import path
from tfx_transfer import BertTokenizer
from tfx_transfer.text.tokenizer_files import find_tokenizer, vocab_file_settings


def _hf_copy(tmp_path, edit=None, name="hf"):
    directory = tmp_path / name
    directory.mkdir()
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(path("hf/bert_model", file), directory / file)
    if edit:
        values = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
        edit(values)
        (directory / "tokenizer.json").write_text(json.dumps(values), encoding="utf-8")
    return str(directory)


def test_transformers_5_directory_without_vocab_txt(tmp_path, monkeypatch):
    monkeypatch.setenv("TFX_TRANSFER_CACHE", str(tmp_path / "cache"))
    settings = find_tokenizer(_hf_copy(tmp_path))
    assert settings.vocab_file.startswith(str(tmp_path / "cache" / "vocab"))  # extracted once, content-addressed
    assert find_tokenizer(_hf_copy(tmp_path, name="again")).vocab_file == settings.vocab_file
    with open(settings.vocab_file, encoding="utf-8") as f:
        assert f.read() == open(path("vocab/uncased_vocab.txt"), encoding="utf-8").read()
    assert (settings.do_lower_case, settings.strip_accents, settings.max_chars_per_word) == (True, None, 100)


def test_a_vocab_txt_equal_to_tokenizer_json_is_used_in_place(tmp_path):
    directory = _hf_copy(tmp_path)
    shutil.copy(path("vocab/uncased_vocab.txt"), os.path.join(directory, "vocab.txt"))
    assert find_tokenizer(directory).vocab_file == os.path.join(directory, "vocab.txt")


def test_settings_the_files_record_are_honoured(tmp_path):
    def no_strip(values):
        values["normalizer"]["strip_accents"] = False
        values["model"]["max_input_chars_per_word"] = 7

    directory = _hf_copy(tmp_path, no_strip)
    config = json.loads(open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8").read())
    config["strip_accents"] = False  # tokenizer_config.json decides where both say something
    open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8").write(json.dumps(config))
    tokenizer = BertTokenizer.from_settings(find_tokenizer(directory))
    assert tokenizer.strip_accents is False and tokenizer.max_chars_per_word == 7
    default = BertTokenizer.from_pretrained(path("hf/bert_model"))
    # Accents kept: "café" has no pieces in an uncased vocabulary; a 10-character word is over the limit of 7.
    assert tokenizer.convert_ids_to_tokens(tokenizer.tokenize(["café eightchars"]).to_list()[0]) == ["[UNK]", "[UNK]"]
    assert "[UNK]" not in default.convert_ids_to_tokens(default.tokenize(["café eightchars"]).to_list()[0])


@pytest.mark.parametrize("edit,message", [
    (lambda v: v["model"].update(type="BPE"), "a BPE tokenizer; tfx_transfer reads BERT WordPiece"),
    (lambda v: v["model"].update(continuing_subword_prefix="@@"), "continuing_subword_prefix='@@'"),
    (lambda v: v["model"]["vocab"].pop("the"), "ids are not 0..1569"),
    (lambda v: v["model"].update(unk_token="<unk>"), "unk_token='<unk>'"),
])
def test_tokenizers_we_cannot_reproduce_are_refused(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        find_tokenizer(_hf_copy(tmp_path, edit))


def test_keras_hub_preset_and_plain_vocab(tmp_path):
    settings = find_tokenizer(path("keras_hub/bert_backbone"))
    assert settings.source.endswith("(keras-hub preset)") and settings.strip_accents is False
    plain = vocab_file_settings(path("vocab/cased_vocab.txt"))
    assert plain.do_lower_case is False and plain.max_chars_per_word == 200  # casing read off the vocabulary
    assert find_tokenizer(str(tmp_path)) is None
