"""One TF Serving model serving three adapted tasks on one base, against one export per task (issue 25).

Three tasks trained by run_classifier.py on the packaged all-MiniLM-L6-v2, each with a different method, 1 epoch,
batch 32, max length 128, seed 0:
    sst2  SST-2, the first 8,000 train rows, Houlsby adapters 64 (+ LayerNorms), lr 1e-3
    mrpc  MRPC (pairs), all 3,668 train rows, LoRA r=8 on query and value, lr 1e-3
    stsb  STS-B (pairs, regression), all 5,749 train rows, (IA)^3, lr 3e-2
Exports: each run alone (`--do_export --init_checkpoint=<run>/final`; LoRA and (IA)^3 merged into the kernels), and
the three as one model (`--export_tasks=sst2:<run>,...`: one base, the tasks' weights unmerged, each example routed
to its task in the graph).

Measured in fresh processes, alternately (single exports, the multi-task export, again each): the size on disk;
the resident memory a process gains by loading the model(s) and answering one request per task; batch-1 latency
p50 / p99 over the three dev sets' examples in turn (single exports: the task's model; multi-task: its
`serving_default` with the task name, and the task's own signature); the throughput of batches of 32 examples of
mixed tasks (single exports: each batch split by task, one call per model, as a client routing them does); the
multi-task outputs against the single exports' on every dev example; each task's dev metric through the multi-task
export.

    python bench/multitask_serving.py               # writes results/multitask_serving.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, SHARED_DATA, shown_command, timed_process, write_results  # noqa: E402

SEQ, BATCH, REQUESTS, ROUNDS = 128, 32, 300, 2
TASKS = {  # name (also run_classifier's --task_name) -> (GLUE directory, run_classifier flags)
    "sst2": ("SST-2", ["--max_train_examples=8000", "--adaptation=adapters", "--adapter_kind=houlsby",
                       "--adapter_size=64", "--learning_rate=1e-3"]),
    "mrpc": ("MRPC", ["--adaptation=lora", "--lora_rank=8", "--learning_rate=1e-3"]),
    "stsb": ("STS-B", ["--adaptation=adapters", "--adapter_kind=ia3", "--learning_rate=3e-2"]),
}
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def train(name, output_dir):
    glue, flags = TASKS[name]
    command = [sys.executable, str(REPO / "run_classifier.py"), f"--data_dir={SHARED_DATA / 'glue_data' / glue}",
               f"--task_name={name}", "--do_train", "--do_eval", f"--output_dir={output_dir}", f"--max_seq_length={SEQ}",
               f"--train_batch_size={BATCH}", f"--eval_batch_size={BATCH}", "--num_train_epochs=1", "--seed=0",
               "--save_checkpoints_steps=100000", *flags]
    _, wall, _ = timed_process(command, env=ENV)
    with open(os.path.join(output_dir, "final", "model_card.json"), encoding="utf-8") as f:
        card = json.load(f)
    return {"command": shown_command(command[1:]), "wall_s": wall, "metrics": card["metrics"]}


def export(argv):
    timed_process([sys.executable, str(REPO / "run_classifier.py"), *argv], env=ENV)


def dev_examples():
    """{task: (texts, texts_b, gold)} from the GLUE dev files, read by the tasks' processors."""
    from tfx_transfer.data.glue import get_processor

    examples = {}
    for name, (glue, _) in TASKS.items():
        processor = get_processor(name)
        rows = processor.dev_examples(str(SHARED_DATA / "glue_data" / glue))
        gold = [float(e.label) if processor.is_regression else processor.labels.index(e.label) for e in rows]
        examples[name] = ([e.text_a for e in rows], [e.text_b or "" for e in rows], gold)
    return examples


def directory_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def weight_bytes(path) -> int:
    """The bytes of an export's variables (what its weights take in memory)."""
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    return sum(int(np.prod(shape)) * dtypes[name].size for name, shape in reader.get_variable_to_shape_map().items()
               if dtypes[name] != tf.string)


# ------------------------------------------------------------------ the measuring process (a fresh one per round)
def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(kind, paths):
    """In this (fresh) process: load `kind` ("singles": {task: path}; "multi": one path), then time it."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    examples = dev_examples()
    names = list(TASKS)
    before = rss_mib()
    if kind == "singles":
        signatures = {n: tf.saved_model.load(paths[n]).signatures["serving_default"] for n in names}

        def call(name, texts, texts_b):
            inputs = {"text": tf.constant(texts)}
            if "text_b" in signatures[name].structured_input_signature[1]:
                inputs["text_b"] = tf.constant(texts_b)
            return signatures[name](**inputs)

        def mixed(tasks, texts, texts_b):  # a client splits the batch by task
            for name in names:
                rows = [i for i, t in enumerate(tasks) if t == name]
                if rows:
                    call(name, [texts[i] for i in rows], [texts_b[i] for i in rows])
    else:
        model = tf.saved_model.load(paths)
        routed = model.signatures["serving_default"]
        own = {n: model.signatures[n] for n in names}

        def call(name, texts, texts_b):
            return routed(task=tf.constant([name] * len(texts)), text=tf.constant(texts), text_b=tf.constant(texts_b))

        def call_own(name, texts, texts_b):
            inputs = {"text": tf.constant(texts)}
            if "text_b" in own[name].structured_input_signature[1]:
                inputs["text_b"] = tf.constant(texts_b)
            return own[name](**inputs)

        def mixed(tasks, texts, texts_b):
            routed(task=tf.constant(tasks), text=tf.constant(texts), text_b=tf.constant(texts_b))
    read = rss_mib()
    for name in names:  # warmup: one request per task
        call(name, examples[name][0][:1], examples[name][1][:1])
    loaded = rss_mib()

    def latencies(function):
        times = []
        for i in range(REQUESTS):
            name = names[i % len(names)]
            texts, texts_b, _ = examples[name]
            j = (i // len(names)) % len(texts)
            start = time.perf_counter()
            function(name, texts[j:j + 1], texts_b[j:j + 1])
            times.append(time.perf_counter() - start)
        return {"p50_ms": 1000 * float(np.percentile(times, 50)), "p99_ms": 1000 * float(np.percentile(times, 99))}

    result = {"rss_before_mib": before, "rss_read_mib": read, "rss_loaded_mib": loaded, "batch1": latencies(call)}
    if kind == "multi":
        result["batch1_own_signature"] = latencies(call_own)
    order = [(name, j) for j in range(max(len(e[0]) for e in examples.values())) for name in names
             if j < len(examples[name][0])]  # the dev sets interleaved: every batch mixes the tasks
    start = time.perf_counter()
    for i in range(0, len(order), BATCH):
        chunk = order[i:i + BATCH]
        mixed([n for n, _ in chunk], [examples[n][0][j] for n, j in chunk], [examples[n][1][j] for n, j in chunk])
    result["mixed_batch32_examples_per_s"] = len(order) / (time.perf_counter() - start)
    outputs = {}
    for name in names:  # every dev example, for the comparison and the metrics
        texts, texts_b, _ = examples[name]
        values = []
        for i in range(0, len(texts), BATCH):
            out = call(name, texts[i:i + BATCH], texts_b[i:i + BATCH])
            values.extend((out["score"] if name == "stsb" else out["probabilities"]).numpy().tolist())
        outputs[name] = values
    result["outputs"] = outputs
    return result


# ------------------------------------------------------------------ the driver
def metrics(name, values, gold):
    import numpy as np

    if name == "stsb":
        return {"pearson": float(np.corrcoef(np.asarray(values), np.asarray(gold))[0, 1])}
    predicted = np.asarray(values)[:, :2].argmax(axis=1)
    gold = np.asarray(gold, int)
    accuracy = float((predicted == gold).mean())
    if name != "mrpc":
        return {"accuracy": accuracy}
    tp, fp, fn = (int(((predicted == a) & (gold == b)).sum()) for a, b in ((1, 1), (1, 0), (0, 1)))
    return {"accuracy": accuracy, "f1": 2 * tp / (2 * tp + fp + fn)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", choices=["singles", "multi"], help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, json.loads(args.paths))))
        return

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        runs, trained = {}, {}
        for name in TASKS:
            runs[name] = os.path.join(tmp, name)
            trained[name] = train(name, runs[name])
            print(f"{name}: trained in {trained[name]['wall_s']:.0f} s, {trained[name]['metrics']}", flush=True)
        singles = {}
        for name in TASKS:
            export(["--do_export", f"--init_checkpoint={runs[name]}/final", f"--task_name={name}",
                    f"--output_dir={tmp}/export_{name}", f"--export_dir={tmp}/single_{name}", f"--max_seq_length={SEQ}",
                    *[flag for flag in TASKS[name][1] if flag.startswith(("--adaptation", "--adapter_", "--lora"))]])
            singles[name] = f"{tmp}/single_{name}/1"
        multi_command = [f"--export_tasks={','.join(f'{n}:{runs[n]}' for n in TASKS)}", f"--export_dir={tmp}/multi"]
        export(multi_command)
        multi = f"{tmp}/multi/1"
        sizes = {"singles_mib": sum(directory_bytes(p) for p in singles.values()) / 2 ** 20,
                 "multi_mib": directory_bytes(multi) / 2 ** 20,
                 "singles_weights_mib": sum(weight_bytes(p) for p in singles.values()) / 2 ** 20,
                 "multi_weights_mib": weight_bytes(multi) / 2 ** 20,
                 "per_single_mib": {n: directory_bytes(p) / 2 ** 20 for n, p in singles.items()}}
        rounds = {"singles": [], "multi": []}
        for _ in range(ROUNDS):
            for kind, paths in (("singles", singles), ("multi", multi)):
                out, wall, peak = timed_process([sys.executable, __file__, f"--measure={kind}",
                                                 f"--paths={json.dumps(paths)}"], env=ENV)
                rounds[kind].append({**json.loads(out.strip().splitlines()[-1]), "peak_rss_gib": peak})
                print(kind, {k: v for k, v in rounds[kind][-1].items() if k != "outputs"}, flush=True)
    examples = dev_examples()
    single_out, multi_out = rounds["singles"][0]["outputs"], rounds["multi"][0]["outputs"]
    agreement = {n: float(np.max(np.abs(np.asarray(single_out[n]) - np.asarray(multi_out[n])[..., :2]
                                        if n != "stsb" else np.abs(np.asarray(single_out[n]) -
                                                                   np.asarray(multi_out[n])))))
                 for n in TASKS}
    served = {n: {"single": metrics(n, single_out[n], examples[n][2]), "multi": metrics(n, multi_out[n],
                                                                                        examples[n][2])}
              for n in TASKS}
    for kind in rounds:
        for r in rounds[kind]:
            r.pop("outputs")

    def median(kind, *keys):
        values = []
        for r in rounds[kind]:
            value = r
            for key in keys:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    summary = {kind: {"loaded_mib": median(kind, "rss_loaded_mib") - median(kind, "rss_before_mib"),
                      "read_mib": median(kind, "rss_read_mib") - median(kind, "rss_before_mib"),
                      "p50_ms": median(kind, "batch1", "p50_ms"), "p99_ms": median(kind, "batch1", "p99_ms"),
                      "mixed_batch32_examples_per_s": median(kind, "mixed_batch32_examples_per_s"),
                      "peak_rss_gib": median(kind, "peak_rss_gib")} for kind in rounds}
    summary["multi_own_signature"] = {"p50_ms": median("multi", "batch1_own_signature", "p50_ms"),
                                      "p99_ms": median("multi", "batch1_own_signature", "p99_ms")}
    s, m = summary["singles"], summary["multi"]
    lines = ["# One TF Serving model for three adapted tasks vs one export per task", "",
             f"all-MiniLM-L6-v2; sst2 (Houlsby 64), mrpc (LoRA r=8), stsb ((IA)^3, regression), each trained 1 epoch "
             f"by run_classifier.py (commands in multitask_serving.json). Fresh process per measurement, {ROUNDS} "
             f"rounds alternating, medians. Batch 1: {REQUESTS} requests cycling through the three dev sets; batch "
             f"32: all {sum(len(e[0]) for e in examples.values())} dev examples interleaved, so every batch mixes the "
             "tasks. Command: `python bench/multitask_serving.py`.", "",
             "| | on disk MiB | weights MiB | memory added by loading (+ a request per task), MiB | batch-1 p50 ms | "
             "batch-1 p99 ms | mixed batch-32 ex/s |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| three single-task exports | {sizes['singles_mib']:.0f} | {sizes['singles_weights_mib']:.0f} | "
             f"{s['read_mib']:.0f} ({s['loaded_mib']:.0f}) | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
             f"{s['mixed_batch32_examples_per_s']:.1f} |",
             f"| one multi-task export (`serving_default`, task per example) | {sizes['multi_mib']:.0f} | "
             f"{sizes['multi_weights_mib']:.0f} | {m['read_mib']:.0f} ({m['loaded_mib']:.0f}) | {m['p50_ms']:.1f} | "
             f"{m['p99_ms']:.1f} | {m['mixed_batch32_examples_per_s']:.1f} |",
             f"| one multi-task export (the task's own signature) | | | | "
             f"{summary['multi_own_signature']['p50_ms']:.1f} | {summary['multi_own_signature']['p99_ms']:.1f} | |",
             "", "| task | its run's dev metric | single export, served | multi-task export, served | max abs "
             "difference of the outputs |", "|---|---|---|---|---:|"]
    for n in TASKS:
        run_metrics = ", ".join(f"{k} {v:.4f}" for k, v in trained[n]["metrics"].items()
                                if k.startswith("eval_") and k != "eval_loss")
        lines.append(f"| {n} | {run_metrics} | " + " | ".join(
            ", ".join(f"{k} {v:.4f}" for k, v in served[n][kind].items()) for kind in ("single", "multi")) +
            f" | {agreement[n]:.2g} |")
    write_results("multitask_serving", {"sizes": sizes, "summary": summary, "rounds": rounds, "served": served,
                                        "agreement": agreement, "trained": trained,
                                        "export_command": shown_command(["run_classifier.py", *multi_command])},
                  lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
