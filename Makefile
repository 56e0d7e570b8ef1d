# Fresh machine: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv with the pinned versions of constraints.txt on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kdgat-installed
DEMO_OUT ?= work/demo
DEMO_SEED ?= 42

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml constraints.txt
	@echo "Installing kdgat into $(VENV) with the pinned versions of constraints.txt (torch CPU wheel, torch-geometric, lightning, mlflow, ...): 1-3 minutes on a fresh machine, quiet while pip works"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)
	@echo "Installed: $$($(BIN)/kdgat --version)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/kdgat pipeline --dataset synthetic --data-root $(DEMO_OUT)/data --out $(DEMO_OUT) --seed $(DEMO_SEED) \
		--epochs 15 --episodes 100 -O training.batch_size=128
	$(BIN)/kdgat detect $(DEMO_OUT)/data/synthetic/test_01_known_vehicle_known_attack/dos-2.csv \
		--detector $(DEMO_OUT)/synthetic/seed$(DEMO_SEED)/detector --out $(DEMO_OUT)/detections.csv

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/detect.py

clean:
	rm -rf $(VENV) work .pytest_cache
