#!/usr/bin/env python
"""Fine-tune a BERT sentence (pair) classifier on GLUE or any labelled text; google-research/bert's command line.

    python run_classifier.py --task_name=MRPC --data_dir=glue_data/MRPC --do_train --do_eval \\
        --output_dir=/tmp/mrpc [--init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt | --pretrained=DIR] \\
        [--adaptation=adapters --adapter_size=64 --learning_rate=1e-3]

See tfx_transfer/jobs/classifier.py for the outputs, and --helpfull for every flag.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFX_TRANSFER_QUIET_START", "1")  # TensorFlow's native start-up lines stay out of the console

from absl import app  # noqa: E402

from tfx_transfer.jobs import classifier  # noqa: E402

classifier.define_flags()

if __name__ == "__main__":
    app.run(lambda argv: sys.exit(classifier.main(argv)))
