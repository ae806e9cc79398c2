"""Files a job writes into --output_dir: atomic text files and the `final/` model directory."""

from __future__ import annotations

import os
import shutil
from typing import Optional

from absl import logging

from tfx_transfer.io_utils import atomic_directory, write_json


def write_text(path: str, text: str):
    """Writes through a temporary file and a rename: readers never see half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def save_final(model, output_dir: str, vocab_file: str, do_lower_case: bool, task: dict, adaptation: str,
               labels: Optional[list] = None) -> str:
    """Writes `output_dir/final/`: model.keras, config.json, vocab.txt, tokenizer_config.json, task.json, and
    adapter.safetensors when only part of the model trained. The directory is a valid --init_checkpoint and
    `from_pretrained` input, and is replaced atomically."""
    from tfx_transfer.adaptation.files import save_adaptation

    directory = os.path.join(output_dir, "final")
    with atomic_directory(directory, overwrite=True) as tmp:
        model.save(os.path.join(tmp, "model.keras"))
        if hasattr(model.encoder, "bert_config"):  # a black-box Hub encoder has no config of ours
            write_json(os.path.join(tmp, "config.json"), model.encoder.bert_config.to_hf_dict())
        shutil.copyfile(vocab_file, os.path.join(tmp, "vocab.txt"))
        write_json(os.path.join(tmp, "tokenizer_config.json"), {"do_lower_case": do_lower_case})
        write_json(os.path.join(tmp, "task.json"), {**task, "do_lower_case": do_lower_case, "adaptation": adaptation})
        if adaptation != "full" and hasattr(model.encoder, "bert_config"):
            save_adaptation(model, os.path.join(tmp, "adapter.safetensors"), labels=labels,
                            extra={"task": task.get("task")})
    logging.info("Saved the final model to %s", directory)
    return directory
