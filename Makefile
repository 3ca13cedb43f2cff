# Brook's two commands: `make run` (serve the demo, no services needed) and `make test` (lint, types, tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run run-prod stop-prod test test-fast lint typecheck pytest install install-dev migrate clean bench-live bench-limits \
	bench-widget bench-servers bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.base-installed: requirements/base.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev-installed: requirements/base.txt requirements/dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $@ $(VENV)/.base-installed

install: $(VENV)/.base-installed
install-dev: $(VENV)/.dev-installed

# make run: local development server. DEBUG defaults to on here (and only here); SQLite, in-memory layer, demo agent.
run: export DEBUG := $(if $(DEBUG),$(DEBUG),1)
run: $(VENV)/.base-installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py brook_setup
	@echo ""
	@echo "  Brook demo page: http://$(HOST):$(PORT)/"
	@echo "  Admin:           http://$(HOST):$(PORT)/admin/"
	@echo "  API docs:        http://$(HOST):$(PORT)/api/docs/"
	@echo ""
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) config.asgi:application

# make run-prod: the production topology on loopback (docs/operations.md): PostgreSQL (DATABASE_URL, default database
# brook_prod, created if missing), Redis (REDIS_URL, or a redis-server of its own), BROOK_PROD_WORKERS ASGI workers
# (default 2; BROOK_PROD_SERVER=daphne|uvicorn) and nginx on BROOK_PROD_PORT (8080). It returns once all answer.
run-prod: $(VENV)/.base-installed
	$(PY) -m deploy.stack start

# make stop-prod: stop what make run-prod started (nginx, workers, its own Redis).
stop-prod: $(VENV)/.base-installed
	$(PY) -m deploy.stack stop

# make test: everything CI checks. DEBUG=1 only lets settings load with the development SECRET_KEY; Django's test
# runner turns DEBUG off while tests run.
test: export DEBUG := 1
test: $(VENV)/.dev-installed lint typecheck pytest

# lint: ruff, and the one-way stack of docs/architecture.md (.importlinter): a back import fails the build.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: export DEBUG := 1
typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy .

pytest: export DEBUG := 1
pytest: $(VENV)/.dev-installed
	$(PY) -m pytest $(PYTEST_ARGS)

# make test-fast: the quick loop (under two minutes): pytest without the browser, stack and slow tests (pyproject.toml).
test-fast: export DEBUG := 1
test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not browser and not stack and not slow" $(PYTEST_ARGS)

migrate: export DEBUG := $(if $(DEBUG),$(DEBUG),1)
migrate: $(VENV)/.base-installed
	$(PY) manage.py migrate --noinput

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# make bench-live: event-log throughput, writes per answer, first-token latency (a script that prints figures).
bench-live: $(VENV)/.dev-installed
	$(PY) bench/live.py

# make bench-limits: the cost of a rate check and of an open-stream slot (local memory; Redis with REDIS_URL set).
bench-limits: $(VENV)/.dev-installed
	$(PY) bench/limits.py

# make bench-widget: the widget on a 10,000-token reply in Debian's Chromium: JS heap and long tasks (seed 001).
bench-widget: $(VENV)/.dev-installed
	$(PY) bench/widget.py

# make bench: Brook as a relay (issue 8's goals), Daphne and uvicorn stacks side by side: added time to first token,
# tokens/s, idle streams, database writes per answer, stop and fan-out across workers. Rewrites docs/benchmarks.md's
# generated section; `$(PY) bench/relay.py --quick` is a three-minute smoke run.
bench: $(VENV)/.dev-installed
	$(PY) bench/relay.py

# make bench-servers: Daphne vs uvicorn as one worker behind nginx (deploy/stack.py, PostgreSQL): requests, SSE, memory.
bench-servers: $(VENV)/.dev-installed
	$(PY) bench/servers.py
