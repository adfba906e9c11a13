# Two set-up commands: `make run` and `make test`. Everything they need is installed from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_VERSION ?= 15
PG_EXT_DIR := /usr/share/postgresql/$(PG_VERSION)/extension
DB_NAME ?= lijiang_fuel
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
export DATABASE_URL ?= postgresql://root@127.0.0.1:5432/$(DB_NAME)
# Local dev defaults; the service refuses these outside FUEL_ENV=development.
export FUEL_ENV ?= development

.PHONY: run test lint bench venv postgres db web browser migrate load clean-cache

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

# PostgreSQL up, PostGIS and pgRouting installed (only when DATABASE_URL points at the local server).
postgres:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
		echo "PostgreSQL is down: starting cluster $(PG_VERSION)/main"; \
		pg_ctlcluster --skip-systemctl-redirect $(PG_VERSION) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi
	@if [ ! -f $(PG_EXT_DIR)/postgis.control ] || [ ! -f $(PG_EXT_DIR)/pgrouting.control ]; then \
		echo "PostGIS/pgRouting missing: installing from Debian packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			postgresql-$(PG_VERSION)-postgis-3 postgresql-$(PG_VERSION)-pgrouting >/dev/null; \
	fi

db: postgres venv
	@$(PY) -m ingest create-db

migrate: db
	@$(PY) -m ingest migrate

load: migrate
	@$(PY) -m ingest load-region

web:
	@$(MAKE) -s -C web build

# Debian's Chromium (and a CJK font for readable screenshots) for the browser tests; when they
# cannot be installed the browser tests skip with one line and the rest of `make test` runs.
browser:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
		echo "installing chromium and a CJK font for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver fonts-droid-fallback >/dev/null) \
		|| echo "chromium could not be installed: browser tests will skip"; \
	fi

run: venv load web
	$(VENV)/bin/uvicorn api.main:app --host $(HOST) --port $(PORT) --workers $(WORKERS) --no-access-log

lint: venv
	$(VENV)/bin/ruff check geo ingest api store config tests benchmarks
	$(VENV)/bin/ruff format --check geo ingest api store config tests benchmarks
	$(VENV)/bin/mypy

test: venv postgres web browser lint
	$(VENV)/bin/pytest -q

bench: venv load
	$(PY) -m benchmarks $(BENCH_ARGS)

clean-cache:
	rm -rf .cache
