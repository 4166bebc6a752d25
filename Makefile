# One command to run the app locally, one to test it; both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install run test unit bench clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Azurite, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

local.settings.json:
	cp local.settings.sample.json $@

# Azurite (10000), the local Key Vault (8443, token 8080) and the app on devhost (7071).
run: install local.settings.json
	$(PY) -m devtools.stack

# The whole suite; integration tests start their own stand-ins on free ports.
test: install
	$(PY) -m pytest

# The unit tests alone: no stand-ins, no network.
unit: install
	$(PY) -m pytest tests/unit

# Request budgets, overhead, cold start, concurrency and memory; writes bench-results.json.
bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) node_modules .local .pytest_cache
