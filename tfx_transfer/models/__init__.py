"""Task models: an encoder plus a head, as keras.Model."""

from tfx_transfer.models.classifier import BertClassifier

__all__ = ["BertClassifier"]
