# The book's two commands:  make book   and   make test   (README.md says more).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# full on a GPU, quick on a CPU; `make book PROFILE=quick` (or full) overrides.
PROFILE ?= $(shell $(PY) -c 'import torch; print("full" if torch.cuda.is_available() else "quick")' 2>/dev/null || echo quick)
DATASETS := mnist fashion_mnist

.PHONY: help env system-deps data execute site book test bench clean

help:
	@echo "make book   environment + data + every chapter executed (PROFILE=$(PROFILE)) + site in _build/html"
	@echo "make test   environment + data + pytest: unit tests, chapters in the quick profile, site with -W"
	@echo "make data | execute | site | clean"

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (aann)" >/dev/null
	touch $@

# Debian packages: Fashion-MNIST's offline copy and Chromium for the rendered-page check.
system-deps:
	@pkgs=""; \
	[ -d /usr/share/datasets/fashion-mnist ] || pkgs="$$pkgs dataset-fashion-mnist"; \
	command -v chromium >/dev/null || pkgs="$$pkgs chromium"; \
	if [ -z "$$pkgs" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:$$pkgs"; \
	  apt-get update -qq || true; \
	  for p in $$pkgs; do \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p >/dev/null \
	      || echo "could not install $$p: Fashion-MNIST is then downloaded, the browser checks skip"; \
	  done; \
	else \
	  echo "not installed (no apt-get as root):$$pkgs; data sets not found offline are downloaded"; \
	fi

data: env system-deps
	$(PY) -m aann.data prepare $(DATASETS) --download

execute: data
	$(PY) -m aann.build execute --profile $(PROFILE)

site: env
	$(PY) -m aann.build site

book: execute
	$(MAKE) site

test: data
	$(PY) -m pytest

clean:
	rm -rf _build

# Benchmarks write JSON to _build/results/ (speed targets are measured here, never in unit tests).
bench: data
	$(PY) benchmarks/bench_neighbours.py
	$(PY) benchmarks/bench_perturbations.py
	$(PY) benchmarks/bench_sense_step.py
	$(PY) benchmarks/bench_psiren_workers.py
	$(PY) benchmarks/bench_pooling.py
	$(PY) benchmarks/bench_eval_batch.py
