# Two commands for a newcomer: `make run` and `make test`. Both start with `make install`.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.stamp-install

.PHONY: install run test lint format schema clean bench ui e2e-deps chromium

# The web UI (frontend/): `npm ci` when the lock file changes, a Vite build when a source,
# the lock file or schema.graphql changes; both are skipped quickly otherwise.
UI := frontend
UI_DEPS := $(UI)/node_modules/.stamp-npm
UI_BUILD := $(UI)/dist/.stamp-build
UI_SOURCES := $(shell find $(UI)/src -type f -not -path '$(UI)/src/gql/*' 2>/dev/null) \
	$(wildcard $(UI)/*.json $(UI)/*.ts $(UI)/*.html $(UI)/*.graphql) schema.graphql

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

ui: $(UI_BUILD)

$(UI_DEPS): $(UI)/package-lock.json
	cd $(UI) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(UI_BUILD): $(UI_DEPS) $(UI_SOURCES)
	cd $(UI) && npm run --silent build
	touch $@

# The end-to-end tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

e2e-deps: ui chromium

run: install ui
	$(VENV)/bin/opsgraph serve

lint: install $(UI_DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd $(UI) && npm run --silent format:check

format: install $(UI_DEPS)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	cd $(UI) && npm run --silent format

schema: install
	$(VENV)/bin/opsgraph print-schema > schema.graphql

test: install lint e2e-deps
	$(VENV)/bin/pytest

# Load benchmarks against a throwaway PostgreSQL database (127.0.0.1:5432, user postgres);
# never part of `make test`. BENCH_ARGS="--quick" for a short run; see bench/README.md.
bench: install
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(PIP) install --quiet 'py-spy>=0.3'
	$(PY) -m bench.all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
