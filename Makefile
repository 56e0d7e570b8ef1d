# Fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv with the pinned versions of constraints.txt on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdgat-installed
DEMO_OUT ?= work/demo

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kdgat pipeline --dataset synthetic --data-root $(DEMO_OUT)/data --out $(DEMO_OUT) \
		--epochs 15 --episodes 100 -O training.batch_size=128

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) work .pytest_cache
