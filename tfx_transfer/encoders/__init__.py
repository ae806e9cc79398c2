"""Encoders speaking the TF Hub BERT dict contract (see ../shared/DESIGN.md)."""

from tfx_transfer.encoders.bert_encoder import INPUT_NAMES, BertEncoder

__all__ = ["BertEncoder", "INPUT_NAMES"]
