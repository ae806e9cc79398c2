"""SQuAD evaluation with the official scripts' definitions (v1.1 `evaluate-v1.1.py`, v2.0 `evaluate-v2.0.py`).

normalize_answer: lower-case, remove punctuation, remove the articles a/an/the, collapse whitespace.
Exact match and token F1 take the max over the gold answers. v1.1 counts every question (unanswered ones score
0) and gives 0 F1 to no overlap; v2.0 drops gold answers that normalise to "", gives unanswerable questions the
gold answer "" (1 only for an empty prediction) and skips questions without a prediction. v2 also reports HasAns/NoAns breakdowns and, with the null
odds, the best threshold and the exact/F1 it achieves (`find_all_best_thresh`).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Dict, List, Optional

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> List[str]:
    return normalize_answer(text).split()


def exact_score(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def _overlap_f1(gold_tokens, predicted_tokens) -> float:
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score_v1(gold: str, prediction: str) -> float:
    """evaluate-v1.1.py: no overlap (including two empty answers) scores 0."""
    return _overlap_f1(_tokens(gold), _tokens(prediction))


def f1_score_v2(gold: str, prediction: str) -> float:
    """evaluate-v2.0.py: if either side is empty, 1 when both are, else 0."""
    gold_tokens, predicted_tokens = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    return _overlap_f1(gold_tokens, predicted_tokens)


def _questions(dataset):
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def _evaluate_v1(dataset, predictions):
    """evaluate-v1.1.py: every question counts; an unanswered one scores 0."""
    exact = f1 = total = 0
    for qa in _questions(dataset):
        total += 1
        if qa["id"] not in predictions:
            continue
        golds = [a["text"] for a in qa["answers"]]
        prediction = predictions[qa["id"]]
        exact += max(exact_score(g, prediction) for g in golds)
        f1 += max(f1_score_v1(g, prediction) for g in golds)
    return {"exact_match": 100.0 * exact / total if total else 0.0, "f1": 100.0 * f1 / total if total else 0.0}


def _raw_scores_v2(dataset, predictions):
    """evaluate-v2.0.py's get_raw_scores: questions without a prediction are skipped."""
    exact, f1 = {}, {}
    for qa in _questions(dataset):
        golds = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
        if qa["id"] not in predictions:
            continue
        prediction = predictions[qa["id"]]
        exact[qa["id"]] = max(exact_score(g, prediction) for g in golds)
        f1[qa["id"]] = max(f1_score_v2(g, prediction) for g in golds)
    return exact, f1


def _apply_threshold(scores, null_odds, has_answer, threshold):
    return {qid: (float(not has_answer[qid]) if null_odds[qid] > threshold else s) for qid, s in scores.items()}


def _best_threshold(predictions, scores, null_odds, has_answer):
    """evaluate-v2.0.py's find_best_thresh: sweep thresholds at the questions' null odds, in increasing order."""
    current = best = float(sum(1 for h in has_answer.values() if not h))
    best_threshold = 0.0
    for qid in sorted(null_odds, key=lambda k: null_odds[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions[qid] else 0
        current += diff
        if current > best:
            best, best_threshold = current, null_odds[qid]
    return 100.0 * best / len(scores), best_threshold


def evaluate(dataset: list, predictions: Dict[str, str], null_odds: Optional[Dict[str, float]] = None,
             null_threshold: float = 1.0, version_2: bool = False) -> Dict[str, float]:
    """Official-script metrics; `dataset` is the JSON's "data" list; scores in percent.

    v1.1: {"exact_match", "f1"}. v2.0: {"exact", "f1", "total", "HasAns_*", "NoAns_*"}, and with `null_odds`
    (question id -> null odds, as the official --na-prob-file) the thresholded scores plus "best_exact",
    "best_exact_thresh", "best_f1", "best_f1_thresh".
    """
    if not version_2:
        return _evaluate_v1(dataset, predictions)
    has_answer = {qa["id"]: bool(qa["answers"]) for qa in _questions(dataset)}
    exact, f1 = _raw_scores_v2(dataset, predictions)
    odds = null_odds if null_odds is not None else {qid: 0.0 for qid in predictions}
    exact_t = _apply_threshold(exact, odds, has_answer, null_threshold)
    f1_t = _apply_threshold(f1, odds, has_answer, null_threshold)
    total = len(exact)
    results = {"exact": 100.0 * sum(exact_t.values()) / total if total else 0.0,
               "f1": 100.0 * sum(f1_t.values()) / total if total else 0.0, "total": total}
    for name, keep in (("HasAns", True), ("NoAns", False)):
        ids = [q for q in exact if has_answer[q] == keep]
        if ids:
            results[f"{name}_exact"] = 100.0 * sum(exact_t[q] for q in ids) / len(ids)
            results[f"{name}_f1"] = 100.0 * sum(f1_t[q] for q in ids) / len(ids)
            results[f"{name}_total"] = len(ids)
    if null_odds is not None:
        results["best_exact"], results["best_exact_thresh"] = _best_threshold(predictions, exact, odds, has_answer)
        results["best_f1"], results["best_f1_thresh"] = _best_threshold(predictions, f1, odds, has_answer)
    return results
