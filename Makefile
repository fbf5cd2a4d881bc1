# satclip developer entry points. Everything installs into ./.venv (created on first use).
#   make demo   - set up, then encode a few locations (the main job)
#   make lint   - ruff (lint + format check), mypy, stubtest of satclip._core, cargo fmt --check, clippy
#   make test   - set up, then lint, then the whole test suite: Rust unit tests, pytest (the SH tests
#                 again at each lower SIMD level), the quick benchmark suite (its zero-copy and
#                 agreement assertions), the regression gate (this tree against a reference
#                 commit, side by side, so it judges the code and not the CPU model), wheel smoke test
#                 and the documentation build
#   make docs   - the documentation site (mkdocs.yml, docs/) into site/, strict: any warning fails it
#   make bench  - the full benchmark suite (slow; see docs/benchmarks.md); `benches/report.py` tabulates it
#   make wheel  - dist/: a portable manylinux2014 (manylinux_2_17) abi3 wheel for x86_64, audited, and the sdist
#   make wheel-smoke      - install that wheel into a fresh venv without cargo/rustc on PATH and use it
#                           (dependencies borrowed from .venv; part of `make test`)
#   make wheel-smoke-full - the same with every dependency (torch...) pip-installed into the fresh venv

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.satclip-installed

# The wheel: no target-cpu anywhere (rust/src/kernel/simd.rs picks AVX2/AVX-512 kernels at run time), zig as the
# linker so that the glibc symbols it links against are manylinux2014's, whatever this machine's glibc is.
WHEEL_TARGET := x86_64-unknown-linux-gnu
WHEEL_TAG := manylinux_2_17_x86_64
DIST := dist

.PHONY: setup build demo lint test docs bench gate wheel wheel-smoke wheel-smoke-full

# (Re)install dependencies only when the project metadata changes (rust/Cargo.toml holds the version).
$(STAMP): pyproject.toml rust/Cargo.toml
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

# The site: API pages from the docstrings (mkdocstrings), the CLI and benchmark pages rendered by
# docs/hooks.py from the argparse parsers and benches/results/*.json. --strict turns every warning
# (a broken link or anchor, a docstring griffe cannot parse) into a failure.
DOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

docs: build
	$(DOCS)

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
	$(DOCS)
	SATCLIP_SIMD=avx2 $(PY) -m pytest $(SH_TESTS) -q
	SATCLIP_SIMD=baseline $(PY) -m pytest $(SH_TESTS) -q
	$(PY) -m pytest benches --benchmark-only --bench-mode=quick -q -p no:cacheprovider
	$(PY) benches/gate.py
	$(MAKE) wheel-smoke

bench: build
	$(PY) -m pytest benches --benchmark-only

gate: build
	$(PY) benches/gate.py

# RUSTFLAGS is cleared so that a developer's target-cpu=native cannot leak into a wheel meant for any x86_64;
# the venv's bin leads PATH because maturin finds zig as `python -m ziglang` there.
wheel: setup
	rm -f $(DIST)/satclip-*.whl $(DIST)/satclip-*.tar.gz
	PATH="$(abspath $(VENV))/bin:$$PATH" RUSTFLAGS= CARGO_BUILD_RUSTFLAGS= CARGO_ENCODED_RUSTFLAGS= $(VENV)/bin/maturin build --release --zig --compatibility manylinux2014 \
		--target $(WHEEL_TARGET) --out $(DIST) -q
	$(VENV)/bin/maturin sdist --out $(DIST)
	$(VENV)/bin/auditwheel show $(DIST)/satclip-*.whl | tee $(DIST)/auditwheel.txt
	@tr -s ' \n' ' ' < $(DIST)/auditwheel.txt | grep -q 'constrains the platform tag to "$(WHEEL_TAG)"' \
		|| { echo "wheel is not $(WHEEL_TAG)-compliant (see $(DIST)/auditwheel.txt)"; exit 1; }
	@! grep -q 'external shared libraries are required' $(DIST)/auditwheel.txt \
		|| { echo "wheel needs shared libraries it does not bundle (see $(DIST)/auditwheel.txt)"; exit 1; }

wheel-smoke: wheel
	$(PY) tests/wheel_smoke.py $(DIST)/satclip-*.whl

wheel-smoke-full: wheel
	$(PY) tests/wheel_smoke.py --full $(DIST)/satclip-*.whl
