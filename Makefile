# The README's set-up: `make run` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast lint bench bench-load quality demo-model demo-bench clean

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

# Issue 14: load + split + padded histories of a 32 M-event MovieLens-32M-format log (synthetic, written
# once into .build/, never committed), with each stage's wall time and the peak RSS.
BENCH_LOAD_DATA := .build/synth-32m
bench-load: $(STAMP)
	test -f $(BENCH_LOAD_DATA)/ratings.csv || \
	  $(BIN)/msli data synth --profile ml-32m --no-truth --out $(BENCH_LOAD_DATA)
	$(BIN)/msli data bench-load $(BENCH_LOAD_DATA)

quality: $(STAMP)
	$(BIN)/msli quality --data sample_data --out reports/quality

# The bundled demo (sample_data/models/, sample_data/bench/) the app shows before anyone trains or
# measures: MS-LI K=4, two-tower and the baselines trained on the sample with seed 0 (library defaults),
# and a small latency sweep with a measured cross-encoder point. Built in .build/, then copied.
DEMO_MODELS := msli-k4:msli:--segments=4 two-tower:two-tower: popularity:popularity: item-knn:item-knn:
demo-model: $(STAMP)
	rm -rf .build/demo
	for spec in $(DEMO_MODELS); do \
	  name=$${spec%%:*}; rest=$${spec#*:}; kind=$${rest%%:*}; extra=$${rest#*:}; \
	  $(BIN)/msli train --data sample_data --model $$kind $$extra --seed 0 --out .build/demo/$$name || exit 1; \
	done
	mkdir -p sample_data/models
	for spec in $(DEMO_MODELS); do name=$${spec%%:*}; \
	  rm -rf sample_data/models/$$name && cp -r .build/demo/$$name sample_data/models/$$name; done

demo-bench: $(STAMP)
	$(BIN)/msli bench --segments 1,4,8 --candidates 1000,10000 --history 50 --request-candidates 1000 \
	  --encoder-sizes 1x32,2x64,4x128 --cross-budget-s 3 --out .build/demo-bench
	rm -rf sample_data/bench && cp -r .build/demo-bench sample_data/bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache reports
