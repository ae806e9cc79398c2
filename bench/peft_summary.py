"""One table per task from every `bench/peft_methods.py` results file: each method's runs pooled over the files
(runs are deterministic, so a (method, seed) found twice is counted once; if two files disagree, the code changed
in between, and the newer file's run is kept and noted), mean ± std over seeds,
the difference to full fine-tuning at the same epochs, and, from one same-session run (speed only means something
when every method ran in one session, interleaved), training and prediction rates relative to full fine-tuning's.

    python bench/peft_summary.py      # reads results/peft_methods*.json, houlsby_recipe*.json; writes peft_summary.*
"""

from __future__ import annotations

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import RESULTS, write_results  # noqa: E402
from peft_methods import METHODS, TASKS  # noqa: E402

SPEED_RUN = "peft_methods_same_session"  # every method, seed 0, one session: the speed columns
SOURCES = ("peft_methods", "houlsby_recipe")
# The rows shown, in order (setting variants that lost their scans are in the source files).
SHOWN = ("full", "full_2ep", "houlsby_2e-3", "houlsby", "houlsby_2ep", "adapterdrop_2", "adapterdrop_3", "unipelt_5e-3",
         "mam", "compacter_1e-2", "ia3", "ia3_2ep", "lora", "prefix", "prompt_1e-1")
EPOCHS_OF = {"full_2ep": 2, "houlsby_2ep": 2, "ia3_2ep": 2}


def pooled_runs():
    """({(task, method): {seed: row}}, notes) from every source file, older files first; where a newer file has a
    (task, method, seed) with another result (the code changed in between), the newer one is kept and noted."""
    payloads = []
    for name in os.listdir(RESULTS):
        if name.endswith(".json") and name.startswith(SOURCES):
            with open(RESULTS / name, encoding="utf-8") as f:
                payloads.append((json.load(f), name))
    runs, origin, notes = {}, {}, []
    for payload, name in sorted(payloads, key=lambda p: (p[0].get("date", ""), p[1])):
        task = payload.get("task", "sst2")
        for row in payload["rows"]:
            key, seed = (task, row["method"]), row["seed"]
            seen = runs.setdefault(key, {}).get(seed)
            if seen is not None and abs(seen["dev_accuracy"] - row["dev_accuracy"]) > 1e-9:
                notes.append(f"{task} {row['method']} seed {seed}: {100 * row['dev_accuracy']:.2f} in {name} "
                             f"replaces {100 * seen['dev_accuracy']:.2f} in {origin[key + (seed,)]}")
            if seen is None or seen["dev_accuracy"] != row["dev_accuracy"]:
                runs[key][seed] = row
                origin[key + (seed,)] = name
    return runs, notes


def speed_rows():
    path = RESULTS / f"{SPEED_RUN}.json"
    if not path.is_file():
        return None, {}
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    return payload.get("date"), {r["method"]: r for r in payload["rows"]}


def mean_std(values):
    mean = statistics.mean(values)
    return (f"{100 * mean:.2f}" + (f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else "")), mean


def task_table(task, runs, speeds):
    name, directory, rows, epochs, length = TASKS[task]
    methods = [m for m in SHOWN if (task, m) in runs]
    if not methods:
        return []
    full = {e: statistics.mean(r["dev_accuracy"] for r in runs[(task, m)].values())
            for m, e in (("full", 1), ("full_2ep", 2)) if (task, m) in runs}
    speed = speeds if task == "sst2" else {}
    base = speed.get("full")
    lines = [f"## {directory} ({'first ' + format(rows, ',') if rows else 'all'} train rows, {epochs:g} "
             f"epoch{'s' if epochs != 1 else ''} unless the row says otherwise, max length {length})", "",
             "| method | trainable | seeds | dev acc (mean ± std) | vs full, same epochs | adapter file |"
             + (" train ex/s (x full) | predict ex/s (x full) |" if speed else ""),
             "|---|---:|---|---:|---:|---:|" + ("---:|---:|" if speed else "")]
    for method in methods:
        by_seed = runs[(task, method)]
        first = by_seed[min(by_seed)]
        text, mean = mean_std([r["dev_accuracy"] for r in by_seed.values()])
        if task == "mrpc" and first.get("dev_f1") is not None:
            text += f" (F1 {mean_std([r['dev_f1'] for r in by_seed.values()])[0]})"
        reference = full.get(EPOCHS_OF.get(method, 1))
        delta = "" if method.startswith("full") or reference is None else f"{100 * (mean - reference):+.2f}"
        size = "" if first["adapter_file_bytes"] is None else f"{first['adapter_file_bytes'] / 1e3:,.0f} kB"
        line = (f"| {METHODS[method][1]} | {100 * first['trainable_fraction']:.3f}% | "
                f"{', '.join(str(s) for s in sorted(by_seed))} | {text} | {delta} | {size} |")
        if speed:
            row = speed.get(method)
            if row is None or base is None:
                line += " | |"
            else:
                train, predict = row["train_examples_per_s"], row["dev_inference_examples_per_s"]
                line += (f" {train:.0f} ({train / base['train_examples_per_s']:.2f}x) | {predict:.0f} "
                         f"({predict / base['dev_inference_examples_per_s']:.2f}x) |")
        lines.append(line)
    return lines + [""]


def main():
    runs, notes = pooled_runs()
    date, speeds = speed_rows()
    lines = ["# Parameter-efficient methods: every seed of every run, per task", "",
             "Pooled from bench/results/peft_methods*.json and houlsby_recipe*.json (each run a fresh "
             "`run_classifier.py` process, all-MiniLM-L6-v2, batch 32, 10% warmup + linear decay, wd 0.01, the dev "
             "set). Command: `python bench/peft_summary.py`." +
             (f" Speed columns: `{SPEED_RUN}.md` ({date}), every method once (seed 0) in one session; the accuracy "
              "columns pool every run." if speeds else ""), ""]
    for task in TASKS:
        lines += task_table(task, runs, speeds)
    if notes:
        lines += ["Replaced by newer runs of the same seed:", ""] + [f"- {n}" for n in notes] + [""]
    payload = {"runs": {f"{t} {m}": {str(s): r["dev_accuracy"] for s, r in by_seed.items()}
                        for (t, m), by_seed in runs.items()}}
    write_results("peft_summary", payload, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
