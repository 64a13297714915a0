# Everything a fresh machine needs: `make demo` and `make test` set up .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-stamp
# pip on this machine takes these two from local disk; newer releases are not allowed here.
TORCH := torch==2.14.1 torchvision==0.29.1
EXTRAS := torch,keras,lightning,hf,optuna,ray,s3,dask,analysis,dev
export MPLBACKEND := agg
export KERAS_BACKEND ?= torch
# The other Keras backends, each in a venv of its own without torch (the way their users
# have them): backend=venv, and the package sets to try, first that installs wins.
BACKEND_VENVS := jax=.venv-jax tensorflow=.venv-tf
PACKAGES_.venv-jax := "jax jaxlib"
PACKAGES_.venv-tf := "tensorflow-cpu" "tensorflow"
# prints backend=python for each backend venv that installed (tests/test_keras_across_backends.py)
BACKEND_PYTHONS := for p in $(BACKEND_VENVS); do v=$${p\#*=}; \
  if [ -f $$v/.installed-stamp ]; then printf '%s ' "$${p%%=*}=$(CURDIR)/$$v/bin/python"; fi; done

.PHONY: install backend-venvs test test-backends demo bench bench-keras paper clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

%/.installed-stamp: pyproject.toml Makefile .ci/backend-venv
	.ci/backend-venv $* $(PACKAGES_$*)

backend-venvs: $(foreach b,$(BACKEND_VENVS),$(word 2,$(subst =, ,$(b)))/.installed-stamp)

# The main venv's suite (torch backend, and the cross-backend test with the other venvs),
# then the Keras backend tests in each backend venv.
test: install backend-venvs
	WEIGHTWATCH_BACKEND_PYTHONS="$$($(BACKEND_PYTHONS))" $(PY) -m pytest -q
	$(MAKE) test-backends

test-backends: backend-venvs
	@set -e; for pair in $(BACKEND_VENVS); do \
	  backend=$${pair%%=*}; venv=$${pair#*=}; \
	  if [ -f $$venv/.unavailable ]; then \
	    echo "SKIPPED the Keras $$backend backend tests: $$(cat $$venv/.unavailable)"; continue; fi; \
	  echo "Keras $$backend backend tests ($$venv, no torch installed)"; \
	  KERAS_BACKEND=$$backend WEIGHTWATCH_EXPECT_NO_TORCH=1 $$venv/bin/python -m pytest -q tests/test_keras_backends.py; \
	done

demo: install
	$(PY) examples/demo.py

bench: install
	$(PIP) install -q -e ".[bench]"
	WANDB_MODE=offline $(PY) benchmarks/overhead.py

bench-keras: install backend-venvs
	$(PY) benchmarks/keras_backends.py --pythons "$$($(BACKEND_PYTHONS))"

# the seed paper on Fashion-MNIST (benchmarks/paper/RESULTS.md); SCALE=smoke|default|paper
SCALE ?= default
paper: install
	$(PY) -m benchmarks.paper --scale $(SCALE) --out runs/paper

clean:
	rm -rf $(VENV) .venv-jax .venv-tf build dist *.egg-info runs report
