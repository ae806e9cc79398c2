"""Task models: an encoder plus a head, as keras.Model."""

from tfx_transfer.models.classifier import BertClassifier
from tfx_transfer.models.feature_classifier import FeatureClassifier
from tfx_transfer.models.masked_lm import BertMaskedLM
from tfx_transfer.models.span_labeler import BertSpanLabeler, span_loss
from tfx_transfer.models.token_classifier import BertTokenClassifier, token_loss

__all__ = ["BertClassifier", "FeatureClassifier", "BertMaskedLM", "BertSpanLabeler", "span_loss", "BertTokenClassifier",
           "token_loss"]
