# Everything a fresh machine needs: `make demo` and `make test` set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-stamp
# pip on this machine takes these two from local disk; newer releases are not allowed here.
TORCH := torch==2.14.1 torchvision==0.29.1
EXTRAS := torch,keras,lightning,hf,optuna,ray,analysis,dev
export MPLBACKEND := agg
export KERAS_BACKEND ?= torch

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) examples/demo.py

bench: install
	$(PIP) install -q -e ".[bench]"
	WANDB_MODE=offline $(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info runs report
