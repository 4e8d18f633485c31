# Two entry points, both self-installing on a fresh machine:
#   make demo   - set up and run the demo
#   make test   - set up (incl. pcscd + vpcd when root) and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean pcsc fuzz docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# PC/SC stack for the reader tests: pcscd + vsmartcard vpcd + pyscard (root installs packages).
pcsc: $(STAMP)
	scripts/setup-pcsc.sh

# Part 1: the card driven by ES10 alone; part 2: the SGP.32 story with an eIM and an SM-DP+.
demo: $(STAMP)
	$(BIN)/python examples/es10_demo.py
	$(BIN)/python examples/demo.py

# The PC/SC set-up needs root to install Debian packages; without it the reader tests skip.
test: $(STAMP)
	scripts/setup-pcsc.sh || echo "PC/SC stack not available: the pcsc tests will skip"
	$(BIN)/ruff check euicc_protocol euicc_sim ipa euicc_servers euicc_cli tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site
	$(BIN)/python -m pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Randomized property and fuzz tests (hypothesis "fuzz" profile), repeated for FUZZ_MINUTES.
FUZZ_MINUTES ?= 5
FUZZ_TESTS ?= tests/test_der_differential.py tests/test_der.py tests/test_roundtrip.py
fuzz: $(STAMP)
	end=$$(( $$(date +%s) + 60 * $(FUZZ_MINUTES) )); \
	while [ $$(date +%s) -lt $$end ]; do \
		HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -x -p no:cacheprovider \
			$(FUZZ_TESTS) || exit 1; \
	done
# The documentation site (docs/ + API reference from the docstrings) into .site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir .site

bench: $(STAMP)
	$(BIN)/python benchmarks/es10.py --json
	$(BIN)/python benchmarks/cli.py --json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis .site build dist *.egg-info
