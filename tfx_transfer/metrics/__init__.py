"""Task metrics: GLUE (accuracy, F1, MCC, Pearson, Spearman)."""

from tfx_transfer.metrics.glue import METRICS, accuracy, compute, f1_binary, matthews_corrcoef, pearson, spearman

__all__ = ["METRICS", "accuracy", "compute", "f1_binary", "matthews_corrcoef", "pearson", "spearman"]
