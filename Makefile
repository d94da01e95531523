# The README's two commands. Each one sets up everything it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Fewer TensorFlow C++ logs unless the caller chose a level (TF 2.21 still prints a few
# start-up lines before it reads this).
TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_CPP_MIN_LOG_LEVEL

.PHONY: demo test test-slow bench setup system-packages

demo: setup
	$(PY) -m tfkd.recipes.resolution_sweep

test: setup
	$(PY) -m pytest tests -q -m "not slow"

# The tests marked slow (the README's examples, run as written): CI runs them after `make test`.
test-slow: setup
	$(PY) -m pytest tests -q -m slow

# Benchmarks, not tests: ratios measured in one process -> benchmarks/results.json and the
# README's Performance table (about 10 minutes on a 2-core CPU).
bench: setup
	$(PY) benchmarks/run.py --output benchmarks/results.json --readme README.md

setup: $(STAMP) system-packages

# Reinstall when the package metadata changes.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and the demo use. Only as root with apt; skipped quietly elsewhere.
system-packages:
	@bash scripts/install_system_packages.sh
