"""Export a BERT as a TF Hub encoder module.

    python -m hub_modules.export_encoder --pretrained=all-MiniLM-L6-v2 --export_path=/tmp/minilm_hub
    python -m hub_modules.export_encoder --init_checkpoint=bert_model.ckpt --bert_config_file=bert_config.json \\
        --vocab_file=vocab.txt --export_path=/tmp/bert_hub
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("pretrained", None, "Model directory or packaged name (default all-MiniLM-L6-v2).")
flags.DEFINE_string("init_checkpoint", None, "A checkpoint to export instead of --pretrained.")
flags.DEFINE_string("bert_config_file", None, "Config of --init_checkpoint when its directory has none.")
flags.DEFINE_string("vocab_file", None, "Vocabulary of --init_checkpoint when its directory has none.")
flags.DEFINE_bool("do_lower_case", None, "Casing to record (default: the model's).")
flags.DEFINE_string("export_path", None, "Directory to write (atomically).")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --export_path.")
FLAGS = flags.FLAGS


def run():
    from hub_modules.encoder import export_encoder
    from tfx_transfer.encoders.bert_encoder import BertEncoder
    from tfx_transfer.jobs.flags import FlagError
    from tfx_transfer.pretrained import DEFAULT_MODEL, resolve_pretrained

    if not FLAGS.export_path:
        raise FlagError("--export_path is required.")
    if FLAGS.init_checkpoint and FLAGS.pretrained:
        raise FlagError("--init_checkpoint and --pretrained both name the model; pass only one.")
    source = FLAGS.init_checkpoint or FLAGS.pretrained or DEFAULT_MODEL
    overrides = {}
    if FLAGS.bert_config_file:
        from tfx_transfer.config import BertConfig

        encoder = BertEncoder.from_bert_config(BertConfig.from_json_file(FLAGS.bert_config_file))
        from tfx_transfer.checkpoints.loader import load_checkpoint

        load_checkpoint(encoder, source)
        vocab_file, do_lower_case = FLAGS.vocab_file, True
    else:
        files = resolve_pretrained(source)
        encoder = BertEncoder.from_pretrained(source, **overrides)
        vocab_file, do_lower_case = FLAGS.vocab_file or files.vocab_file, files.do_lower_case
    if vocab_file is None:
        raise FlagError("--vocab_file is required with --bert_config_file.")
    if FLAGS.do_lower_case is not None:
        do_lower_case = FLAGS.do_lower_case
    path = export_encoder(encoder, vocab_file, do_lower_case, FLAGS.export_path, FLAGS.overwrite)
    print(f"Exported the Hub encoder to {path}")
    return 0


def main(argv):
    from tfx_transfer.jobs.cli import run_main

    return run_main(run, argv)


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
