"""Access to the interop fixtures in tests/fixtures/ (files made by the genuine producers; see its README.md)."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TOLERANCE = 1e-4  # max |ours - producer's| on every output the issue asks about


def _producers_common():
    """tests/fixtures/producers/common.py: the texts every producer ran on (one list, read by both sides)."""
    spec = importlib.util.spec_from_file_location("fixture_producers_common", FIXTURES / "producers" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_COMMON = _producers_common()
SENTENCES, PAIRS, CASED_SENTENCES = _COMMON.SENTENCES, _COMMON.PAIRS, _COMMON.CASED_SENTENCES
SQUAD = [(item["question"], item["context"]) for item in _COMMON.SQUAD]
MNLI_LABELS = list(_COMMON.LABELS)


def path(*parts) -> str:
    return str(FIXTURES.joinpath(*parts))


def expected(*parts) -> dict:
    """The producer's stored outputs (expected.npz) of the fixture directory `parts`."""
    with np.load(FIXTURES.joinpath(*parts, "expected.npz")) as data:
        return {key: data[key] for key in data.files}


def inputs(stored: dict, prefix: str = "") -> dict:
    return {key: stored[prefix + key].astype("int32") for key in ("input_word_ids", "input_mask", "input_type_ids")}


def max_difference(ours, theirs, mask=None) -> float:
    """max |ours - theirs|; for [B, T, ...] outputs only at real tokens (`mask` [B, T])."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    if mask is not None:
        real = np.asarray(mask).astype(bool)
        ours, theirs = ours[real], theirs[real]
    return float(np.max(np.abs(ours - theirs)))


def encoder_differences(encoder, stored: dict) -> dict:
    """{output: max |difference|} of `encoder` against the stored sequence/pooled (and per-layer) outputs."""
    x = inputs(stored)
    out = encoder(x)
    result = {}
    if "sequence_output" in stored:
        result["sequence_output"] = max_difference(out["sequence_output"], stored["sequence_output"], x["input_mask"])
    if "pooled_output" in stored:
        result["pooled_output"] = max_difference(out["pooled_output"], stored["pooled_output"])
    if "encoder_outputs" in stored:
        result["encoder_outputs"] = max(max_difference(o, s, x["input_mask"])
                                        for o, s in zip(out["encoder_outputs"], stored["encoder_outputs"]))
    return result


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
