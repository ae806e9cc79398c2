#!/usr/bin/env python
"""Fine-tune a BERT token classifier (NER, part-of-speech tags, chunking) on CoNLL or CoNLL-U files.

    python run_ner.py --train_file=train.txt --dev_file=dev.txt --do_train --do_eval --output_dir=/tmp/ner \\
        [--init_checkpoint=... | --pretrained=DIR] [--adaptation=adapters --adapter_size=64 --learning_rate=1e-3]
    python run_ner.py --train_file=en_ewt-ud-test.conllu --dev_file=en_ewt-ud-dev.conllu --label_column=upos ...

See tfx_transfer/jobs/ner.py for the outputs, and --helpfull for every flag.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFX_TRANSFER_QUIET_START", "1")  # TensorFlow's native start-up lines stay out of the console

from absl import app  # noqa: E402

from tfx_transfer.jobs import ner  # noqa: E402

ner.define_flags()

if __name__ == "__main__":
    app.run(lambda argv: sys.exit(ner.main(argv)))
