"""GLUE metrics against scikit-learn and SciPy."""

import numpy as np
import pytest

from tfx_transfer.metrics import accuracy, f1_binary, matthews_corrcoef, pearson, spearman


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels, predictions = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert accuracy(labels, predictions) == pytest.approx(sklearn.accuracy_score(labels, predictions))
    assert f1_binary(labels, predictions) == pytest.approx(sklearn.f1_score(labels, predictions))
    assert matthews_corrcoef(labels, predictions) == pytest.approx(sklearn.matthews_corrcoef(labels, predictions))


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_ties(seed):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 300).astype(float)  # many ties, like STS-B scores
    y = x + rng.normal(0, 1.5, 300)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-10)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-10)


def test_degenerate_cases():
    assert matthews_corrcoef([1, 1, 0], [1, 1, 1]) == 0.0  # constant prediction: undefined, 0 like sklearn
    assert f1_binary([0, 0], [0, 0]) == 0.0
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
    assert accuracy([], []) == 0.0
