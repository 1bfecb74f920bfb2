# The two set-up commands of the README. Both create .venv and install the project
# (and its pinned dependencies) first, so they work on a fresh clone.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench-ingest clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attrgraph demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

bench-ingest: $(STAMP)
	$(VENV)/bin/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
