# Two commands set everything up on a fresh machine:
#   make run   - install into .venv and transcribe the bundled example clips on a warm pool
#   make test  - install into .venv and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/whisperpool transcribe --workers 2 --language en --status examples/clips/*.wav

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not real_model"

bench: $(STAMP)
	$(BIN)/whisperpool bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
