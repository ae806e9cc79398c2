"""Task metrics: GLUE (accuracy, F1, MCC, Pearson, Spearman), SQuAD (metrics/squad.py) and token classification
(metrics/tagging.py: token accuracy, conlleval / seqeval entity-level precision, recall and F1)."""

from tfx_transfer.metrics.glue import METRICS, accuracy, compute, f1_binary, matthews_corrcoef, pearson, spearman

__all__ = ["METRICS", "accuracy", "compute", "f1_binary", "matthews_corrcoef", "pearson", "spearman"]
