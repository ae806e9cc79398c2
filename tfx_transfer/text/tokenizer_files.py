"""Where a model's WordPiece settings live, in each producer's layout: `TokenizerSettings` from a directory.

    google-research/bert   vocab.txt (casing is not recorded: the vocabulary's own casing decides)
    Hugging Face           tokenizer.json (the vocabulary, `normalizer.lowercase` / `strip_accents`,
                           `model.max_input_chars_per_word`) + tokenizer_config.json (`do_lower_case`); transformers
                           5 writes no vocab.txt, older versions write both
    keras-hub presets      tokenizer.json (`class_name` BertTokenizer, `config.lowercase` / `strip_accents`) +
                           assets/tokenizer/vocabulary.txt
    TF Hub modules         assets/vocab.txt (casing is the module's `do_lower_case`; read where the module is)
    tfx_transfer final/    vocab.txt + tokenizer_config.json (do_lower_case, strip_accents, max_input_chars_per_word)

A vocabulary that exists only inside a Hugging Face tokenizer.json is written out once as a vocab.txt in the user
cache (`$TFX_TRANSFER_CACHE`, default `~/.cache/tfx_transfer`, or the temporary directory when that is not
writable), in a directory named by the content's hash, so everything downstream (tokenizer, exports, final/) reads
a plain file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from typing import List, Optional

from tfx_transfer.io_utils import read_json
from tfx_transfer.text.casing import vocab_is_cased
from tfx_transfer.text.vocab import load_vocab

GOOGLE_MAX_CHARS_PER_WORD = 200  # google-research/bert's tokenization.py
HF_MAX_CHARS_PER_WORD = 100  # Hugging Face's WordPiece default
TF_TEXT_MAX_BYTES_PER_WORD = 100  # tensorflow-text's (Fast)BertTokenizer default: Model Garden, keras-hub


@dataclasses.dataclass(frozen=True)
class TokenizerSettings:
    """How a model's text is turned into ids.

    Attributes:
        vocab_file: WordPiece vocab.txt (one token per line, id = line number).
        do_lower_case: lower-case the text (uncased models).
        strip_accents: None = strip accents exactly when lower-casing (BERT); True / False decide separately.
        max_chars_per_word: longer words become one [UNK].
        source: the files the settings were read from, for messages and model cards.
    """

    vocab_file: str
    do_lower_case: bool
    strip_accents: Optional[bool] = None
    max_chars_per_word: int = GOOGLE_MAX_CHARS_PER_WORD
    source: str = "vocab.txt"

    def with_casing(self, do_lower_case: bool) -> "TokenizerSettings":
        return dataclasses.replace(self, do_lower_case=bool(do_lower_case))

    def to_tokenizer_config(self) -> dict:
        """The tokenizer_config.json we write beside a vocab.txt (Hugging Face's keys, plus
        max_input_chars_per_word, which Hugging Face keeps in tokenizer.json)."""
        return {"do_lower_case": self.do_lower_case, "strip_accents": self.strip_accents,
                "max_input_chars_per_word": self.max_chars_per_word, "tokenizer_class": "BertTokenizer"}


def _cache_dir() -> str:
    root = os.environ.get("TFX_TRANSFER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tfx_transfer")
    for candidate in (os.path.join(root, "vocab"), os.path.join(tempfile.gettempdir(), "tfx_transfer_vocab")):
        try:
            os.makedirs(candidate, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise OSError(f"No writable cache directory for extracted vocabularies (tried {root} and the temporary "
                  "directory); set TFX_TRANSFER_CACHE.")


def write_cached_vocab(tokens: List[str]) -> str:
    """`tokens` as `<cache>/vocab/<content hash>/vocab.txt` (written atomically; the name stays vocab.txt, which
    exports copy as their asset); returns its path."""
    text = "\n".join(tokens) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = os.path.join(_cache_dir(), digest, "vocab.txt")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".vocab-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ Hugging Face tokenizer.json
def is_hf_tokenizer_json(values) -> bool:
    return isinstance(values, dict) and isinstance(values.get("model"), dict) and "normalizer" in values


def is_keras_hub_tokenizer_json(values) -> bool:
    return isinstance(values, dict) and "class_name" in values and isinstance(values.get("config"), dict)


def hf_vocab_tokens(values: dict, path: str) -> List[str]:
    """The WordPiece vocabulary of a tokenizer.json in id order.

    Raises:
        ValueError: not a BERT WordPiece tokenizer (BPE, Unigram, another continuation prefix), or ids with gaps.
    """
    model = values["model"]
    kind = model.get("type")
    if kind != "WordPiece":
        raise ValueError(f"{path}: a {kind} tokenizer; tfx_transfer reads BERT WordPiece tokenizers "
                         "(tokenizer.json model.type 'WordPiece').")
    prefix = model.get("continuing_subword_prefix", "##")
    if prefix != "##":
        raise ValueError(f"{path}: continuing_subword_prefix={prefix!r}; BERT WordPiece uses '##'.")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"{path}: tokenizer.json has no WordPiece vocabulary (model.vocab).")
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    ids = [i for _, i in by_id]
    if ids != list(range(len(ids))):
        gaps = sorted(set(range(max(ids) + 1)) - set(ids))[:5]
        raise ValueError(f"{path}: the vocabulary's ids are not 0..{len(ids) - 1} (missing e.g. {gaps}).")
    return [token for token, _ in by_id]


def _hf_settings(directory: str, tokenizer_json: str, values: dict) -> TokenizerSettings:
    tokens = hf_vocab_tokens(values, tokenizer_json)
    unk = values["model"].get("unk_token", "[UNK]")
    if unk != "[UNK]":
        raise ValueError(f"{tokenizer_json}: unk_token={unk!r}; BERT WordPiece uses '[UNK]'.")
    normalizer = values.get("normalizer") or {}
    if normalizer.get("type") not in (None, "BertNormalizer"):
        warnings.warn(f"{tokenizer_json}: normalizer {normalizer.get('type')!r} is not BERT's; tfx_transfer applies "
                      "BERT's normalisation (clean text, CJK split, casing from tokenizer_config.json).", stacklevel=3)
    if normalizer.get("handle_chinese_chars") is False:
        warnings.warn(f"{tokenizer_json}: handle_chinese_chars is false, but tfx_transfer always splits CJK "
                      "characters (as BERT does); ids can differ on CJK text.", stacklevel=3)
    lower = normalizer.get("lowercase")
    strip = normalizer.get("strip_accents")
    config_file = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(config_file):
        config = read_json(config_file, "a Hugging Face tokenizer_config.json")
        lower = config.get("do_lower_case", lower)
        strip = config.get("strip_accents", strip)
    vocab_file = os.path.join(directory, "vocab.txt")
    if not (os.path.isfile(vocab_file) and load_vocab(vocab_file) == tokens):
        vocab_file = write_cached_vocab(tokens)
    return TokenizerSettings(vocab_file=vocab_file, do_lower_case=True if lower is None else bool(lower),
                             strip_accents=None if strip is None else bool(strip),
                             max_chars_per_word=int(values["model"].get("max_input_chars_per_word",
                                                                        HF_MAX_CHARS_PER_WORD)),
                             source=f"{tokenizer_json} (Hugging Face)")


def _keras_hub_settings(directory: str, tokenizer_json: str, values: dict) -> TokenizerSettings:
    if values.get("class_name") not in ("BertTokenizer", "WordPieceTokenizer"):
        raise ValueError(f"{tokenizer_json}: a keras-hub {values.get('class_name')}; tfx_transfer reads BERT "
                         "WordPiece tokenizers (BertTokenizer).")
    config = values["config"]
    if config.get("suffix_indicator", "##") != "##" or config.get("oov_token", "[UNK]") != "[UNK]":
        raise ValueError(f"{tokenizer_json}: suffix_indicator {config.get('suffix_indicator')!r} / oov_token "
                         f"{config.get('oov_token')!r}; BERT WordPiece uses '##' and '[UNK]'.")
    vocab_file = os.path.join(directory, "assets", "tokenizer", "vocabulary.txt")
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"{directory}: a keras-hub preset without assets/tokenizer/vocabulary.txt.")
    # keras-hub limits words to 100 *bytes*; the limit here counts characters (equal for ASCII words).
    return TokenizerSettings(vocab_file=vocab_file, do_lower_case=bool(config.get("lowercase", False)),
                             strip_accents=bool(config.get("strip_accents", False)),
                             max_chars_per_word=TF_TEXT_MAX_BYTES_PER_WORD,
                             source=f"{tokenizer_json} (keras-hub preset)")


def _plain_settings(directory: str, vocab_file: str, do_lower_case: Optional[bool]) -> TokenizerSettings:
    """A vocab.txt, with the tokenizer_config.json beside it when there is one (Hugging Face 4.x, ours)."""
    config_file = os.path.join(directory, "tokenizer_config.json")
    if not os.path.isfile(config_file):
        return vocab_file_settings(vocab_file, do_lower_case)
    config = read_json(config_file, "a Hugging Face tokenizer_config.json")
    if do_lower_case is None and config.get("do_lower_case") is not None:
        do_lower_case = bool(config["do_lower_case"])
    settings = vocab_file_settings(vocab_file, do_lower_case)
    strip = config.get("strip_accents")
    return dataclasses.replace(settings, strip_accents=None if strip is None else bool(strip),
                               max_chars_per_word=int(config.get("max_input_chars_per_word",
                                                                 GOOGLE_MAX_CHARS_PER_WORD)),
                               source=f"{settings.source} + tokenizer_config.json")


def vocab_file_settings(vocab_file: str, do_lower_case: Optional[bool] = None) -> TokenizerSettings:
    """Settings for a bare vocab.txt (google-research/bert's defaults); casing from the vocabulary when not given.

    Raises:
        FileNotFoundError / ValueError: a missing or malformed vocab.txt.
    """
    vocab = load_vocab(vocab_file)
    source = os.path.basename(vocab_file)
    if do_lower_case is None:
        do_lower_case = not vocab_is_cased(vocab)
        source += " (casing from the vocabulary)"
    return TokenizerSettings(vocab_file, bool(do_lower_case), source=source)


def find_tokenizer(directory: str, do_lower_case: Optional[bool] = None) -> Optional[TokenizerSettings]:
    """The tokenizer settings stored in `directory`, or None when it holds no vocabulary.

    Args:
        do_lower_case: the casing when the files do not record it (e.g. a Hub module's `do_lower_case`).

    Raises:
        ValueError: a tokenizer file of a kind tfx_transfer cannot reproduce (BPE, SentencePiece, ...).
    """
    tokenizer_json = os.path.join(directory, "tokenizer.json")
    if os.path.isfile(tokenizer_json):
        try:
            with open(tokenizer_json, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{tokenizer_json}: not a readable tokenizer.json ({e}).") from e
        if is_hf_tokenizer_json(values):
            return _hf_settings(directory, tokenizer_json, values)
        if is_keras_hub_tokenizer_json(values):
            return _keras_hub_settings(directory, tokenizer_json, values)
    for name in ("vocab.txt", os.path.join("assets", "vocab.txt")):
        vocab_file = os.path.join(directory, name)
        if os.path.isfile(vocab_file):
            return _plain_settings(directory, vocab_file, do_lower_case)
    return None
