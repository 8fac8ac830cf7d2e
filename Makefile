# The book's two commands:  make book   and   make test   (README.md says more).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# full on a GPU, quick on a CPU; `make book PROFILE=quick` (or full) overrides.
PROFILE ?= $(shell $(PY) -c 'import torch; print("full" if torch.cuda.is_available() else "quick")' 2>/dev/null || echo quick)
DATASETS := mnist fashion_mnist

.PHONY: help env system-deps data execute site book published test test-kernels bench clean device-wheels

help:
	@echo "make book   environment + data + the published edition (stored full-profile runs) in _build/html"
	@echo "            make book PROFILE=quick|full: every chapter executed in that profile instead"
	@echo "make test   environment + data + pytest: unit tests, chapters in the quick profile, site with -W"
	@echo "make test-kernels   the unit tests again under the CPU kernel families default and avx2"
	@echo "make data | execute | site | published | clean | bench | device-wheels"

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

# make book: the published edition, the stored full-profile executions (results/full/*.ipynb)
# rendered without executing them; a chapter with none stored yet is executed in the quick profile
# first. make book PROFILE=quick|full: every chapter executed in that profile, then rendered.
ifeq ($(origin PROFILE),file)
book: data
	$(PY) -m aann.build execute --unpublished --profile quick
	$(PY) -m aann.build site --edition published
else
book: execute
	$(MAKE) site
endif

# The published edition from what is there, executing nothing.
published: env
	$(PY) -m aann.build site --edition published

test: data
	$(PY) -m pytest

# The unit tests (not the chapters) under other CPU kernel families than this processor's own:
# PyTorch's dispatch (ATEN_CPU_CAPABILITY) and oneDNN's instruction set (ONEDNN_MAX_CPU_ISA) capped
# together. `make test` already compares the sensitive numbers across them (tests/test_cpu_kernels.py).
KERNEL_FAMILIES := default:SSE41 avx2:AVX2
test-kernels: data
	for family in $(KERNEL_FAMILIES); do \
	  cap=$${family%%:*}; isa=$${family##*:}; \
	  echo "== ATEN_CPU_CAPABILITY=$$cap ONEDNN_MAX_CPU_ISA=$$isa"; \
	  ATEN_CPU_CAPABILITY=$$cap ONEDNN_MAX_CPU_ISA=$$isa $(PY) -m pytest -m "not chapter and not site" -q -p no:cacheprovider; \
	done

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

# Wheels for a GPU machine (Python 3.12, x86-64) that has its own torch, numpy and scientific
# stack but none of the notebook runners and no Box2D: the versions installed here and their needs,
# into .whl/ (ignored, ~35 MB). Carry .whl there and start the command with
#   python3 -m pip install -q --no-index --no-deps --target "$HOME/site" .whl/*.whl && export PYTHONPATH="$HOME/site"
DEVICE_PYTHON ?= 3.12
DEVICE_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
	manylinux1_x86_64 any
DEVICE_PACKAGES := gymnasium box2d pygame-ce papermill jupytext ipykernel
device-wheels: env
	rm -rf .whl
	$(PY) -m pip download -q --only-binary=:all: --python-version $(DEVICE_PYTHON) --implementation cp \
	  $(addprefix --platform ,$(DEVICE_PLATFORMS)) -d .whl \
	  $$($(PY) -c 'import importlib.metadata as m, sys; print(*(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $(DEVICE_PACKAGES))
	rm -f .whl/numpy-*.whl  # the machine's own numpy, the one its torch was built against
	@echo "$$(ls .whl | wc -l) wheels, $$(du -sh .whl | cut -f1) in .whl/"
