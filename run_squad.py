#!/usr/bin/env python
"""SQuAD v1.1 / v2.0 span prediction; google-research/bert's command line.

    python run_squad.py --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt --train_file=train-v1.1.json \\
        --predict_file=dev-v1.1.json --do_train --do_predict --eval --output_dir=/tmp/squad
    python run_squad.py --train_file=... --predict_file=... --do_train --do_predict --eval --output_dir=... \\
        --adaptation=adapters --adapter_size=64 --learning_rate=1e-3      # packaged MiniLM by default

See tfx_transfer/jobs/squad.py for the outputs, and --helpfull for every flag.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFX_TRANSFER_QUIET_START", "1")  # TensorFlow's native start-up lines stay out of the console

from absl import app  # noqa: E402

from tfx_transfer.jobs import squad  # noqa: E402

squad.define_flags()

if __name__ == "__main__":
    app.run(lambda argv: sys.exit(squad.main(argv)))
