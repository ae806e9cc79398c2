"""SQuAD v1.1 / v2.0: reading the JSON, building doc-stride features, and turning logits back into answers,
as google-research/bert's run_squad.py does (same spans, same windows, same n-best, same final text).

Speed: WordPiece runs once per split in the TF graph over every whitespace token of every paragraph (paragraphs
are shared by their questions); only the window bookkeeping is Python. The 10,570-question dev set converts in
seconds (bench/squad.py reports the time).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from tfx_transfer.data.pipeline import EncodedSplit
from tfx_transfer.text.basic_tokenizer import basic_tokenize


@dataclasses.dataclass
class SquadExample:
    qas_id: str
    question_text: str
    doc_tokens: List[str]  # whitespace tokens of the context (shared by the paragraph's questions)
    paragraph_index: int
    orig_answer_text: Optional[str] = None
    start_position: Optional[int] = None  # in doc_tokens; -1 when impossible
    end_position: Optional[int] = None
    is_impossible: bool = False


def _is_whitespace(char):
    return char in " \t\r\n" or ord(char) == 0x202F


def _whitespace_tokens(text):
    tokens, char_to_word = [], []
    previous_is_whitespace = True
    for char in text:
        if _is_whitespace(char):
            previous_is_whitespace = True
        else:
            if previous_is_whitespace:
                tokens.append(char)
            else:
                tokens[-1] += char
            previous_is_whitespace = False
        char_to_word.append(len(tokens) - 1)
    return tokens, char_to_word


def _require(mapping, key, where, path):
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{path}: {where} has no {key!r} key; is this a SQuAD file?")
    return mapping[key]


def read_squad(path: str, is_training: bool, version_2: bool = False) -> tuple:
    """(examples, dataset) of a SQuAD JSON file; `dataset` is its "data" list (for evaluation).

    Training needs exactly one answer per answerable question, at `answer_start`; an answer whose text is not found
    there is skipped with a warning naming the question id (google-research/bert's behaviour), never silently.

    Raises:
        FileNotFoundError / ValueError naming the file and the missing key, the question id, or the bad offset.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SQuAD file not found: {path!r}.")
    try:
        with open(path, encoding="utf-8") as f:
            dataset = _require(json.load(f), "data", "the top-level object", path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from e
    examples, skipped = [], 0
    paragraph_index = 0
    for article in dataset:
        for paragraph in _require(article, "paragraphs", "an article", path):
            context = _require(paragraph, "context", "a paragraph", path)
            doc_tokens, char_to_word = _whitespace_tokens(context)
            for qa in _require(paragraph, "qas", "a paragraph", path):
                qas_id = str(_require(qa, "id", "a question", path))
                question = _require(qa, "question", f"question {qas_id}", path)
                example = SquadExample(qas_id, question, doc_tokens, paragraph_index)
                if is_training:
                    example.is_impossible = bool(qa.get("is_impossible", False)) if version_2 else False
                    answers = _require(qa, "answers", f"question {qas_id}", path)
                    if example.is_impossible:
                        example.start_position = example.end_position = -1
                        example.orig_answer_text = ""
                    else:
                        if len(answers) != 1:
                            raise ValueError(f"{path}: question {qas_id} has {len(answers)} answers; for training "
                                             "each answerable question needs exactly 1.")
                        text = _require(answers[0], "text", f"the answer of {qas_id}", path)
                        offset = _require(answers[0], "answer_start", f"the answer of {qas_id}", path)
                        if not isinstance(offset, int) or not 0 <= offset < len(context) or \
                                offset + len(text) > len(context) or not text:
                            raise ValueError(f"{path}: question {qas_id}: answer_start={offset} with a {len(text)}-"
                                             f"character answer is outside its {len(context)}-character context.")
                        example.orig_answer_text = text
                        example.start_position = char_to_word[offset]
                        example.end_position = char_to_word[offset + len(text) - 1]
                        actual = " ".join(doc_tokens[example.start_position:example.end_position + 1])
                        if actual.find(" ".join(text.split())) == -1:
                            logging.warning("Question %s: answer %r not found at answer_start=%d (context has %r); "
                                            "skipped.", qas_id, text, offset, actual)
                            skipped += 1
                            continue
                examples.append(example)
            paragraph_index += 1
    if skipped:
        logging.warning("%s: skipped %d of %d questions whose answer text is not at answer_start.", path, skipped,
                        skipped + len(examples))
    if not examples:
        raise ValueError(f"{path}: no usable questions.")
    return examples, dataset


@dataclasses.dataclass
class SquadFeature:
    """One doc-stride window of one question: [CLS] query [SEP] doc window [SEP]."""

    unique_id: int
    example_index: int
    doc_span_index: int
    token_ids: List[int]
    segment_length: int  # length of [CLS] query [SEP]
    token_to_orig_map: Dict[int, int]  # feature position -> doc_tokens index
    token_is_max_context: Dict[int, bool]
    start_position: int = 0
    end_position: int = 0
    is_impossible: bool = False


def _is_max_context(doc_spans, current, position):
    best_score, best_index = None, None
    for index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return current == best_index


def _improve_answer_span(doc_ids, start, end, answer_ids):
    """The smallest sub-token span in [start, end] whose pieces equal the tokenised answer text."""
    answer = list(answer_ids)
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_ids[new_start:new_end + 1] == answer:
                return new_start, new_end
    return start, end


def _ragged_lists(tokenizer, strings):
    if not strings:
        return []
    return tokenizer.tokenize(list(strings)).to_list()


def build_features(examples: Sequence[SquadExample], tokenizer, max_seq_length: int = 384, doc_stride: int = 128,
                   max_query_length: int = 64, is_training: bool = False):
    """Doc-stride features of `examples` (google-research/bert's convert_examples_to_features): a list of
    `SquadFeature`, windows of each question in order. Training features of answerable questions whose answer lies
    outside a window point at [CLS] (0, 0), as in google-research/bert."""
    if max_seq_length <= max_query_length + 3:
        raise ValueError(f"max_seq_length={max_seq_length} must be > max_query_length + 3 = {max_query_length + 3}.")
    paragraphs = {}
    for example in examples:
        paragraphs.setdefault(example.paragraph_index, example.doc_tokens)
    order = sorted(paragraphs)
    flat = [token for index in order for token in paragraphs[index]]
    pieces = _ragged_lists(tokenizer, flat)
    per_paragraph, cursor = {}, 0
    for index in order:
        n = len(paragraphs[index])
        tok_to_orig, orig_to_tok, all_ids = [], [], []
        for i, word_pieces in enumerate(pieces[cursor:cursor + n]):
            orig_to_tok.append(len(all_ids))
            tok_to_orig.extend([i] * len(word_pieces))
            all_ids.extend(word_pieces)
        per_paragraph[index] = (all_ids, tok_to_orig, orig_to_tok)
        cursor += n
    queries = _ragged_lists(tokenizer, [e.question_text for e in examples])
    answers = _ragged_lists(tokenizer, [e.orig_answer_text or "" for e in examples]) if is_training else None

    features, unique_id = [], 1000000000
    for example_index, example in enumerate(examples):
        query = queries[example_index][:max_query_length]
        all_ids, tok_to_orig, orig_to_tok = per_paragraph[example.paragraph_index]
        tok_start = tok_end = None
        if is_training and example.is_impossible:
            tok_start = tok_end = -1
        elif is_training:
            tok_start = orig_to_tok[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end = orig_to_tok[example.end_position + 1] - 1
            else:
                tok_end = len(all_ids) - 1
            tok_start, tok_end = _improve_answer_span(all_ids, tok_start, tok_end, answers[example_index])
        max_tokens_for_doc = max_seq_length - len(query) - 3
        doc_spans, start = [], 0
        while start < len(all_ids):
            length = min(len(all_ids) - start, max_tokens_for_doc)
            doc_spans.append((start, length))
            if start + length == len(all_ids):
                break
            start += min(length, doc_stride)
        if not doc_spans:  # an empty context: one window with the question only
            doc_spans = [(0, 0)]
        offset = len(query) + 2
        for span_index, (span_start, span_length) in enumerate(doc_spans):
            ids = [tokenizer.cls_id] + query + [tokenizer.sep_id]
            token_to_orig, is_max = {}, {}
            for i in range(span_length):
                position = span_start + i
                token_to_orig[len(ids)] = tok_to_orig[position]
                is_max[len(ids)] = _is_max_context(doc_spans, span_index, position)
                ids.append(all_ids[position])
            ids.append(tokenizer.sep_id)
            feature = SquadFeature(unique_id, example_index, span_index, ids, offset, token_to_orig, is_max,
                                   is_impossible=example.is_impossible)
            if is_training and not example.is_impossible:
                span_end = span_start + span_length - 1
                if span_start <= tok_start and tok_end <= span_end:
                    feature.start_position = tok_start - span_start + offset
                    feature.end_position = tok_end - span_start + offset
            features.append(feature)
            unique_id += 1
    return features


def features_to_split(features: Sequence[SquadFeature], max_seq_length: int):
    """An `EncodedSplit` of the features (labels: [start, end] pairs for training)."""
    n = len(features)
    longest = max(len(f.token_ids) for f in features)
    word_ids = np.zeros((n, longest), np.int32)
    type_ids = np.zeros((n, longest), np.int32)
    lengths = np.zeros(n, np.int32)
    labels = np.zeros((n, 2), np.int32)
    for i, f in enumerate(features):
        word_ids[i, :len(f.token_ids)] = f.token_ids
        type_ids[i, f.segment_length:len(f.token_ids)] = 1
        lengths[i] = len(f.token_ids)
        labels[i] = (f.start_position, f.end_position)
    return EncodedSplit(word_ids, type_ids, lengths, labels, [str(f.unique_id) for f in features])


# ---------------------------------------------------------------------------------------------- post-processing
def _strip_spaces(text):
    chars, to_original = [], {}
    for i, char in enumerate(text):
        if char == " ":
            continue
        to_original[len(chars)] = i
        chars.append(char)
    return "".join(chars), to_original


def final_text(predicted: str, original: str, do_lower_case: bool) -> str:
    """Projects the de-tokenised prediction onto the original words (google-research/bert's get_final_text):
    e.g. prediction "steve smith" in original "Steve Smith's" gives "Steve Smith"."""
    tokenized = " ".join(basic_tokenize(original, do_lower_case))
    start = tokenized.find(predicted)
    if start == -1:
        return original
    end = start + len(predicted) - 1
    original_ns, original_map = _strip_spaces(original)
    tokenized_ns, tokenized_map = _strip_spaces(tokenized)
    if len(original_ns) != len(tokenized_ns):
        return original
    tokenized_inverse = {position: i for i, position in tokenized_map.items()}
    if start not in tokenized_inverse or end not in tokenized_inverse:
        return original
    start_ns, end_ns = tokenized_inverse[start], tokenized_inverse[end]
    if start_ns not in original_map or end_ns not in original_map:
        return original
    return original[original_map[start_ns]:original_map[end_ns] + 1]


def _softmax(scores):
    if not scores:
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _best_indexes(logits, n):
    return list(np.argsort(-np.asarray(logits), kind="stable")[:n])


def postprocess(examples, features, start_logits, end_logits, vocab, do_lower_case: bool, n_best_size: int = 20,
                max_answer_length: int = 30, version_2: bool = False, null_score_diff_threshold: float = 0.0):
    """(predictions, nbest, null_odds) from per-feature logits [N, T], as google-research/bert's write_predictions.

    predictions: qas_id -> answer text ("" when v2's null odds exceed the threshold); nbest: qas_id -> list of
    {text, probability, start_logit, end_logit}; null_odds (v2): qas_id -> null score - best non-null score.
    """
    by_example = collections.defaultdict(list)
    for index, feature in enumerate(features):
        by_example[feature.example_index].append(index)
    predictions, all_nbest, null_odds = collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict()
    for example_index, example in enumerate(examples):
        prelim = []
        null_score, null_start, null_end, null_feature = 1e6, 0.0, 0.0, 0
        for index in by_example[example_index]:
            feature = features[index]
            starts, ends = start_logits[index], end_logits[index]
            n_tokens = len(feature.token_ids)
            if version_2:
                score = float(starts[0] + ends[0])
                if score < null_score:
                    null_score, null_start, null_end, null_feature = score, float(starts[0]), float(ends[0]), index
            for s in _best_indexes(starts[:n_tokens], n_best_size):
                for e in _best_indexes(ends[:n_tokens], n_best_size):
                    if s not in feature.token_to_orig_map or e not in feature.token_to_orig_map:
                        continue
                    if not feature.token_is_max_context.get(s, False) or e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((float(starts[s]) + float(ends[e]), index, s, e, float(starts[s]), float(ends[e])))
        if version_2:
            prelim.append((null_start + null_end, null_feature, 0, 0, null_start, null_end))
        prelim.sort(key=lambda p: p[0], reverse=True)
        seen, nbest = set(), []
        for _, index, s, e, start_logit, end_logit in prelim:
            if len(nbest) >= n_best_size:
                break
            feature = features[index]
            if s > 0:
                pieces = [vocab[i] for i in feature.token_ids[s:e + 1]]
                text = " ".join(pieces).replace(" ##", "").replace("##", "")
                text = " ".join(text.strip().split())
                original = " ".join(example.doc_tokens[feature.token_to_orig_map[s]:feature.token_to_orig_map[e] + 1])
                text = final_text(text, original, do_lower_case)
            else:
                text = ""
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": start_logit, "end_logit": end_logit})
        if version_2 and "" not in seen:
            nbest.append({"text": "", "start_logit": null_start, "end_logit": null_end})
        if not nbest:
            nbest.append({"text": "empty", "start_logit": 0.0, "end_logit": 0.0})
        for entry, probability in zip(nbest, _softmax([n["start_logit"] + n["end_logit"] for n in nbest])):
            entry["probability"] = probability
        all_nbest[example.qas_id] = nbest
        if not version_2:
            predictions[example.qas_id] = nbest[0]["text"]
        else:
            best = next((n for n in nbest if n["text"]), None)
            if best is None:
                null_odds[example.qas_id] = float("inf")
                predictions[example.qas_id] = ""
                continue
            diff = null_score - best["start_logit"] - best["end_logit"]
            null_odds[example.qas_id] = diff
            predictions[example.qas_id] = "" if diff > null_score_diff_threshold else best["text"]
    return predictions, all_nbest, null_odds
