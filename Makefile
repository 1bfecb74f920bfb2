# The two set-up commands of the README. Both create .venv and install the project
# (and its pinned dependencies) first, so they work on a fresh clone.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench-ingest clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev,ml,spark]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attrgraph demo

# pytest exits 5 when it collected no test: that is a broken suite here, so say so and fail.
test: $(STAMP)
	$(VENV)/bin/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing the run"; exit 1; fi; exit $$rc

bench-ingest: $(STAMP)
	$(VENV)/bin/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
