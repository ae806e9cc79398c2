#!/usr/bin/env python
"""Continued masked-LM pretraining of a BERT on your own text (DAPT) or a task's own texts (TAPT).

    python run_pretraining.py --input_file=corpus.txt --eval_file=held_out.txt --do_train --do_eval \\
        --output_dir=/tmp/dapt [--init_checkpoint=... | --pretrained=DIR]
    python run_pretraining.py --task_name=SST-2 --data_dir=glue_data/SST-2 --do_train --do_eval --output_dir=/tmp/tapt

See tfx_transfer/jobs/pretraining.py for the outputs, and --helpfull for every flag.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFX_TRANSFER_QUIET_START", "1")  # TensorFlow's native start-up lines stay out of the console

from absl import app  # noqa: E402

from tfx_transfer.jobs import pretraining  # noqa: E402

pretraining.define_flags()

if __name__ == "__main__":
    app.run(lambda argv: sys.exit(pretraining.main(argv)))
