"""Token-classification metrics: token accuracy, and entity-level precision / recall / F1 as conlleval and seqeval
compute them.

Entities (chunks) are read from BIO (IOB2), IOB1 or IOBES tags the conlleval way (seqeval's default mode, not its
`strict` one): a chunk starts at B- or S-, at an I- or E- that follows O or a chunk of another type, or where the
type changes, and ends before the next start, O, or type change, so malformed sequences (an I- after O) still give
chunks. Sentences are scored as one sequence joined by O, so no chunk crosses a sentence boundary. Micro scores
count every chunk; per type, precision = correct / predicted and recall = correct / gold, 0 when undefined (seqeval
with `zero_division=0`). Checked against seqeval 1.2.2's own output on generated sequences
(tests/fixtures/seqeval/, producer tests/fixtures/producers/seqeval_scores.py).

    scores = entity_scores(gold_sentences, predicted_sentences)
    scores["f1"], scores["per_type"]["PER"]["f1"]
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

CHUNK_PREFIXES = ("B-", "I-", "E-", "S-")


def _split(tag: str) -> Tuple[str, str]:
    """(prefix letter, type) exactly as seqeval reads a tag without `suffix`: "B-PER" -> ("B", "PER"),
    "O" -> ("O", "_"), a bare "B" -> ("B", "_") (and a tag without a prefix, "PER", -> ("P", "ER"), as seqeval)."""
    return tag[0], tag[1:].split("-", 1)[-1] or "_"


def _ends(prev_tag, tag, prev_type, type_) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag, tag, prev_type, type_) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def chunks(tags: Sequence[str]) -> List[Tuple[str, int, int]]:
    """[(type, first index, last index)] of the chunks in one tag sequence (seqeval's `get_entities`)."""
    out = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, tag in enumerate(list(tags) + ["O"]):
        letter, type_ = _split(tag)
        if _ends(prev_tag, letter, prev_type, type_):
            out.append((prev_type, begin, i - 1))
        if _starts(prev_tag, letter, prev_type, type_):
            begin = i
        prev_tag, prev_type = letter, type_
    return out


def _flat(sentences: Sequence[Sequence[str]]) -> List[str]:
    return [tag for sentence in sentences for tag in list(sentence) + ["O"]]


def _ratio(num, den) -> float:
    return num / den if den else 0.0


def _f1(precision, recall) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Dict:
    """Entity-level scores of predicted tag sentences against gold ones (same lengths).

    Returns:
        {"precision", "recall", "f1" (micro), "macro_f1", "weighted_f1", "predicted", "gold", "correct",
         "per_type": {type: {"precision", "recall", "f1", "support"}}}; types sorted, "support" = gold chunks.
    """
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("entity_scores: gold and predicted sentences differ in number or length.")
    gold_chunks, pred_chunks = set(chunks(_flat(gold))), set(chunks(_flat(predicted)))
    per_type = {}
    for type_ in sorted({c[0] for c in gold_chunks | pred_chunks}):
        g = {c for c in gold_chunks if c[0] == type_}
        p = {c for c in pred_chunks if c[0] == type_}
        precision, recall = _ratio(len(g & p), len(p)), _ratio(len(g & p), len(g))
        per_type[type_] = {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": len(g)}
    correct = len(gold_chunks & pred_chunks)
    precision, recall = _ratio(correct, len(pred_chunks)), _ratio(correct, len(gold_chunks))
    supports = sum(s["support"] for s in per_type.values())
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall),
            "macro_f1": _ratio(sum(s["f1"] for s in per_type.values()), len(per_type)),
            "weighted_f1": _ratio(sum(s["f1"] * s["support"] for s in per_type.values()), supports),
            "predicted": len(pred_chunks), "gold": len(gold_chunks), "correct": correct, "per_type": per_type}


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """The fraction of words whose predicted tag is the gold one."""
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    return _ratio(sum(g == p for g, p in pairs), len(pairs))


def is_chunk_tagging(labels: Sequence[str]) -> bool:
    """True when the label set is BIO / IOB1 / IOBES (every label O or prefixed B-, I-, E-, S-) and has a chunk
    label, i.e. entity-level scores mean something (NER, chunking); False for POS tags."""
    labels = list(labels)
    return any(l.startswith(CHUNK_PREFIXES) for l in labels) and all(
        l == "O" or l.startswith(CHUNK_PREFIXES) for l in labels)
