# satclip developer entry points. Everything installs into ./.venv (created on first use).
#   make demo   - set up, then encode a few locations (the main job)
#   make lint   - ruff (lint + format check), mypy, stubtest of satclip._core, cargo fmt --check, clippy
#   make test   - set up, then lint, then the whole test suite: Rust unit tests, pytest (the SH tests
#                 again at each lower SIMD level), quick benchmark gate
#                 (median ratio of 3 quick runs; a 30% margin keeps a shared CI machine from flaking,
#                 while a build without SIMD drops the ratios by 65-90%)
#   make bench  - the full benchmark suite (slow; see README "Benchmarks")

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.satclip-installed

.PHONY: setup build demo lint test bench gate

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

# Same checks as .pre-commit-config.yaml. Clippy also wants a SAFETY comment on every unsafe block.
lint: build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest satclip._core
	cargo fmt --all --check
	cargo clippy --release --all-targets --features python --manifest-path rust/Cargo.toml -- \
		-D warnings -W clippy::undocumented_unsafe_blocks

# The SH tests run once more per lower SIMD level: the dispatcher picks only the best level the
# CPU offers, so without SATCLIP_SIMD the AVX2 and portable kernels would go untested on AVX-512.
SH_TESTS := tests/test_spherical_harmonics.py tests/test_gradients.py

test: lint
	cargo test --release --manifest-path rust/Cargo.toml
	$(PY) -m pytest tests -q
	SATCLIP_SIMD=avx2 $(PY) -m pytest $(SH_TESTS) -q
	SATCLIP_SIMD=baseline $(PY) -m pytest $(SH_TESTS) -q
	$(PY) benches/gate.py --quick --runs 3 --margin 0.3

bench: build
	$(PY) -m pytest benches --benchmark-only

gate: build
	$(PY) benches/gate.py
