# satclip developer entry points. Everything installs into ./.venv (created on first use).
#   make demo   - set up, then encode a few locations (the main job)
#   make test   - set up, then run the whole test suite: Rust unit tests, pytest, quick benchmark gate
#                 (median ratio of 3 quick runs; a 30% margin keeps a shared CI machine from flaking,
#                 while a build without SIMD drops the ratios by 65-90%)
#   make bench  - the full benchmark suite (slow; see README "Benchmarks")

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.satclip-installed

.PHONY: setup build demo test bench gate

# (Re)install dependencies only when the project metadata changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip maturin
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(STAMP)

# Rebuild the Rust extension in place (incremental; seconds when nothing changed).
build: setup
	$(VENV)/bin/maturin develop --release --skip-install -q

demo: build
	$(PY) examples/encode_locations.py

test: build
	cargo test --release --manifest-path rust/Cargo.toml
	$(PY) -m pytest tests -q
	$(PY) benches/gate.py --quick --runs 3 --margin 0.3

bench: build
	$(PY) -m pytest benches --benchmark-only

gate: build
	$(PY) benches/gate.py
