# Two entry points for a fresh machine:
#   make demo   install everything, then run the whole pipeline on bundled real data
#   make test   install everything, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e '.[train,test]'

demo: install
	$(BIN)/imgclf demo

test: install
	sh scripts/install-chromium.sh
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	sh scripts/install-bench-fonts.sh
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
