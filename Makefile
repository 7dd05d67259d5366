# Two commands matter: `make demo` (the example release, end to end, on the local sandbox)
# and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: venv demo up test test-unit lint lock clean

$(STAMP): requirements.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	@touch $(STAMP)

venv: $(STAMP)

demo: venv  ## run the example release pipeline end to end on the local sandbox
	$(PY) -m include.localenv demo

up: venv  ## leave the sandbox and Airflow running for the UI on http://127.0.0.1:8080
	$(PY) -m include.localenv up

# Two workers: the integration tests (one Airflow environment) in one, the fault, execution-mode and
# stage-control tests (another) in the other, the rest beside them wherever there is room (tests/conftest.py).
test: venv lint  ## lint, then every test: unit, sandbox, and integration against real Airflow processes
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: venv  ## ruff: lint rules and formatting (pyproject.toml [tool.ruff])
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-unit: venv
	$(PY) -m pytest tests/unit tests/dags $(PYTEST_ARGS)

lock:  ## re-pin constraints.txt from a fresh install of requirements.txt
	rm -rf /tmp/ro-lock && $(PYTHON) -m venv /tmp/ro-lock && /tmp/ro-lock/bin/pip install -q -r requirements.txt
	{ echo "# Exact pins of every package, as installed together (pip freeze of a clean .venv)."; \
	  echo "# Regenerate: make lock"; /tmp/ro-lock/bin/pip freeze; } > constraints.txt

clean:
	rm -rf .airflow .sandbox
