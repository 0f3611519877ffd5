# The two set-up commands live here: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pgsentry.demo

test: $(STAMP)
	$(PY) -m pgsentry.devtools.pgcheck
	$(VENV)/bin/ruff check pgsentry tests
	$(VENV)/bin/ruff format --check pgsentry tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pgsentry check policies/
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	@command -v pgbouncer >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq pgbouncer) \
		|| echo "pgbouncer could not be installed: the benchmark runs without it"
	$(PY) -m pgsentry.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
