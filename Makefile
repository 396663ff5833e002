# speechacts: every command creates the project-local virtual environment when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
EXPERIMENT ?= experiments/default.yaml

.PHONY: setup run prepare test test-fast lint bench ui lock clean

# torch first and alone: 2.13.0 is the CPU build on local disk; letting the project's range
# pick it would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)            ## the main job: prepare the data, run the default experiment, compare
	$(BIN)/speechacts prepare
	$(BIN)/speechacts experiment $(EXPERIMENT)

prepare: $(STAMP)
	$(BIN)/speechacts prepare

test: $(STAMP)           ## the whole suite CI runs (slow tests included)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)          ## the default job (make run), whole and per-family final fit; for prediction: $(PY) bench/bench_predict.py --model outputs/<run id>/model
	$(PY) bench/bench_train.py experiments/default.yaml

ui: $(STAMP)             ## MLflow UI on the local store at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

lock: $(STAMP)
	(echo "# Pinned versions the project was tested with; 'make setup' installs with -c constraints.txt."; \
	 echo "# Regenerate with 'make lock' after changing dependencies."; \
	 $(PY) -m pip freeze --exclude-editable | grep -v '^speechacts' | sed 's/^torch==\(.*\)+cpu/torch==\1/') > constraints.txt

clean:
	rm -rf outputs data/prepared .pytest_cache
