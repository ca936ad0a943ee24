# Two commands on a fresh machine: `make demo` and `make test`. Both run `make setup` first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hwnas-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

# Strict editable install: site-packages gets a plain path to a tree of links to the sources, which
# editors and type checkers resolve (the default mode's import hook they cannot). The tree links each file,
# so adding or removing a file (a new space, proxy or profile) needs a re-link: the stamp depends on the
# package folders, whose times change then. Otherwise re-installs only when the metadata or the pins change.
PACKAGE_DIRS := $(shell find hwnas models latency search deploy profiles -type d ! -name __pycache__ 2>/dev/null)
$(STAMP): pyproject.toml constraints.txt $(PACKAGE_DIRS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt pip setuptools wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]' \
		--config-settings editable_mode=strict
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
