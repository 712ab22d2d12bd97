# The README's set-up: `make run` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint bench quality clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port 8501

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# the quick loop: everything but the tests marked slow (the app pages and the real browser), ~1 minute
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/msli bench --out reports/bench

quality: $(STAMP)
	$(BIN)/msli quality --data sample_data --out reports/quality

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache reports
