"""Encoders speaking the TF Hub BERT dict contract (see ../shared/DESIGN.md)."""

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES, BertEncoder, find_encoder
from tfx_transfer.encoders.hub_encoder import HubEncoder

__all__ = ["BertEncoder", "HubEncoder", "INPUT_NAMES", "find_encoder"]
