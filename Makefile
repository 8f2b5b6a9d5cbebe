# The project's entry points. People, hooks and CI call these and nothing else.
#   make demo   the whole flow end to end on this machine
#   make up     the local cloud (Azurite, DPS, hubs, the Functions app) until Ctrl-C
#   make test   every test (installs what it needs, a Chromium too, starts Azurite itself)
#   make check  formatting, lint and types

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The Node.js device SDKs the end-to-end tests drive (HTTPS, MQTT over WebSockets): test-only.
NODE_TEST_STAMP := tests/node/node_modules/.installed

.PHONY: install browser test check format bench demo up clean

install: $(PY_STAMP) $(NODE_STAMP) $(NODE_TEST_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(NODE_TEST_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

# The console's browser tests drive Chromium: Playwright's own, else the system's (installed here
# when missing; without one those tests fail and say how to install it).
browser: $(PY_STAMP)
	-$(BIN)/python -m devtools.browser install

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(PY_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: install
	$(BIN)/python -m demo

up: install
	$(BIN)/python -m emulator up

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules tests/node/node_modules .pytest_cache .mypy_cache .ruff_cache
