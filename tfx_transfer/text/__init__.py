"""Text to model inputs with tensorflow-text: WordPiece tokenizer, packer, preprocessor."""

from tfx_transfer.text.packer import BertPacker, BertPreprocessor
from tfx_transfer.text.tokenizer import BertTokenizer
from tfx_transfer.text.vocab import load_vocab

__all__ = ["BertTokenizer", "BertPacker", "BertPreprocessor", "load_vocab"]
