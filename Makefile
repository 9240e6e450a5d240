# The two commands of the README, and the recipe of the embedded default bundle.
VENV := .venv
BIN := $(VENV)/bin
BUILD := build/default-bundle

.PHONY: demo test lint default-bundle

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/poco-rt demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Simulate 4 animals (3000 frames to train on, 600 held out for the demo), train the small POCO,
# export it into the package. Deterministic for the seed; about 10 minutes on 2 cores.
default-bundle: $(BIN)/.installed
	$(BIN)/poco-rt simulate --sessions 4 --frames 3000 --holdout-frames 600 --seed 0 --out $(BUILD)/sim.npz
	$(BIN)/poco-rt train --data $(BUILD)/sim.npz --out $(BUILD)/run --preset small --steps 3000 --eval-every 100 --patience 5 --seed 0 --quiet
	rm -rf core/default_bundle
	$(BIN)/poco-rt export $(BUILD)/run --data $(BUILD)/sim.npz --out core/default_bundle
	mkdir -p core/demo && cp $(BUILD)/sim.holdout.npz core/demo/replay.npz
