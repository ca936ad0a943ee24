# Two commands on a fresh machine: `make demo` and `make test`. Both run `make setup` first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hwnas-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

# The [ray] and [postgres] extras are installed so that the tests of search --ray and of a PostgreSQL tuning
# study run (they skip, saying why, where these are missing). Idempotent: re-installs only when the project
# metadata or the pins change. (A strict editable install, which type checkers resolve, breaks `python -m
# pytest` and `python` run from the repository root: the root's hwnas/ folder shadows the linked package and
# hides hwnas.models/latency/search.)
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt pip setuptools wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,ray,postgres]'
	touch $(STAMP)

# A short real search: ImageNet space, 6 ms per image on the shipped CPU profile (ONNX Runtime,
# 1 thread, batch 1), then the best network measured end to end beside its prediction where this
# machine is the profile's device; elsewhere one line says so and how to profile this machine.
demo: setup
	rm -rf runs/demo
	$(BIN)/search --latency-ms 6 --space imagenet224 --population 64 --iterations 1000 --batch-size 8 \
		--workers 2 --out runs/demo --measure auto

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	$(BIN)/python benchmarks/bench_proxies.py
	$(BIN)/python benchmarks/bench_predictor.py

clean:
	rm -rf $(VENV) build dist *.egg-info
