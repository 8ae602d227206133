# The two set-up commands (see README): `make demo` runs the main job end to end on generated data,
# `make test` runs the test suite. Both create .venv and install everything the project needs,
# torch==2.13.0 (CPU) first so that no CUDA build is pulled.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgedet-installed

.PHONY: demo test lint install clean bench-tracking bench-gating device-check docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgedet demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs site (mkdocs.yml, pages in docs/) into site/, in strict mode: a broken link or anchor, a missing page
# or a page left out of the nav fails. Offline: no web fonts, no CDN. `make test` builds it too (test_docs_site.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Third-party trackers for `edgedet bench tracking`, never in .venv: supervision, trackers and TrackEval require
# opencv-python (clashes with opencv-python-headless) and norfair pins numpy<2 (it runs on numpy 2): hence --no-deps.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.edgedet-bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet numpy opencv-python-headless scipy pandas xmltodict tabulate \
		pycocotools matplotlib pillow pyyaml pydantic defusedxml requests tqdm pydeprecate onnxruntime \
		"filterpy>=1.4.5,<2" "rich>=9.10,<15"
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps norfair==2.3.0 supervision==0.26.1 trackers==2.6.1 \
		motmetrics==1.4.0 trackeval==1.3.0
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(BENCH_STAMP)

# Device check on emulated arm64 (qemu-user + an arm64 Debian bookworm rootfs; root and binfmt_misc):
# see deploy/device-check.sh. Exit status 3: arm64 cannot be emulated on this machine.
device-check: $(STAMP)
	HOST_PYTHON=$(abspath $(BIN))/python bash deploy/device-check.sh

bench-tracking: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/edgedet bench tracking $(BENCH_ARGS)

# Motion gating and object events (`edgedet bench gating`): the project's own code only, so .venv will do.
GATING_ARGS ?=

bench-gating: $(STAMP)
	$(BIN)/edgedet bench gating $(GATING_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) outputs .pytest_cache .ruff_cache
