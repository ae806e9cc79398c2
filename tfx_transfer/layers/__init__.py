"""Keras 3 layers of the from-scratch BERT (one public layer per module)."""

from tfx_transfer.layers.activations import get_activation
from tfx_transfer.layers.attention import MultiHeadSelfAttention
from tfx_transfer.layers.embeddings import BertEmbeddings
from tfx_transfer.layers.masked_lm import MaskedLMHead
from tfx_transfer.layers.pooler import BertPooler
from tfx_transfer.layers.scalar_mix import ScalarMix
from tfx_transfer.layers.transformer_block import TransformerBlock

__all__ = ["BertEmbeddings", "MultiHeadSelfAttention", "TransformerBlock", "BertPooler", "ScalarMix", "MaskedLMHead",
           "get_activation"]
