# Two entry points on a fresh machine (Python >= 3.11):
#   make demo   set up .venv, install jaxcam, run the phantom experiment (Table 1 + Figure 1)
#   make test   set up .venv, install jaxcam with test extras, type-check jaxcam/ (mypy), run the
#               tests (all but the experiment-scale ones marked slow: `make test-slow`; CI runs both)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-slow bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(PY) experiments/phantom.py

test: $(VENV)/.installed
	$(PY) -m mypy
	$(PY) -m pytest -m "not slow"

test-slow: $(VENV)/.installed
	$(PY) -m pytest -m slow

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_exact.py

clean:
	rm -rf $(VENV) results .mypy_cache
