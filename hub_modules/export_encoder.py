"""Export a BERT as a TF Hub encoder module.

    python -m hub_modules.export_encoder --pretrained=all-MiniLM-L6-v2 --export_path=/tmp/minilm_hub
    python -m hub_modules.export_encoder --init_checkpoint=bert_model.ckpt --bert_config_file=bert_config.json \\
        --vocab_file=vocab.txt --export_path=/tmp/bert_hub
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFX_TRANSFER_QUIET_START", "1")  # tfx_transfer/native_logs.py

from absl import flags  # noqa: E402

from hub_modules.encoder import export_encoder  # noqa: E402
from tfx_transfer.encoders.bert_encoder import BertEncoder  # noqa: E402
from tfx_transfer.jobs.cli import parse_and_run  # noqa: E402
from tfx_transfer.jobs.errors import FlagError  # noqa: E402
from tfx_transfer.pretrained import DEFAULT_MODEL  # noqa: E402

# A private flag registry: importing this module never clashes with the scripts' flags.
FLAGS = flags.FlagValues()

flags.DEFINE_string("pretrained", None, "Model directory or packaged name (default all-MiniLM-L6-v2).",
                    flag_values=FLAGS)
flags.DEFINE_string("init_checkpoint", None, "A checkpoint to export instead of --pretrained.", flag_values=FLAGS)
flags.DEFINE_string("bert_config_file", None, "Config of --init_checkpoint when its directory has none.",
                    flag_values=FLAGS)
flags.DEFINE_string("vocab_file", None, "Vocabulary of --init_checkpoint when its directory has none.",
                    flag_values=FLAGS)
flags.DEFINE_bool("do_lower_case", None, "Casing to record (default: the model's).", flag_values=FLAGS)
flags.DEFINE_string("export_path", None, "Directory to write (atomically).", flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --export_path.", flag_values=FLAGS)


def run():
    if not FLAGS.export_path:
        raise FlagError("--export_path is required.")
    if FLAGS.init_checkpoint and FLAGS.pretrained:
        raise FlagError("--init_checkpoint and --pretrained both name the model; pass only one.")
    source = FLAGS.init_checkpoint or FLAGS.pretrained or DEFAULT_MODEL
    try:  # every layout `from_pretrained` reads; the flags fill in what a bare checkpoint directory lacks
        encoder = BertEncoder.from_pretrained(source, verbose=True, config_file=FLAGS.bert_config_file,
                                              vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    except FileNotFoundError as e:
        raise FlagError(f"{source}: {e}") from e
    path = export_encoder(encoder, encoder.pretrained.tokenizer, FLAGS.export_path, FLAGS.overwrite)
    print(f"Exported the Hub encoder to {path}")
    return 0


def main(argv=None) -> int:
    """Parses flags from `argv` (default sys.argv), runs the export; one-line errors and exit code 2."""
    return parse_and_run(FLAGS, run, argv)


if __name__ == "__main__":
    sys.exit(main())
