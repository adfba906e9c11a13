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
# One uvicorn worker per core: each is one Python process (one GIL), so this is what uses every core.
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
export DATABASE_URL ?= postgresql://root@127.0.0.1:5432/$(DB_NAME)
# Local dev defaults; the service refuses the development secrets outside FUEL_ENV=development on a
# loopback HOST (set FUEL_SECRET_KEY and FUEL_ADMIN_API_KEY to serve on another address).
export FUEL_ENV ?= development
WECHAT_PORT ?= 8090
WECHATPAY_PORT ?= 8091
SITES_CONTROL_PORT ?= 7102
# In development the API logs users in against the fake WeChat server API, and pays through the fake
# WeChat Pay gateway, that `make run` starts (their keys: .cache/wechatpay, written on first start). Given
# to `make run`'s processes only (not exported: `make test` builds production settings of its own).
ifeq ($(FUEL_ENV),development)
RUN_ENV := FUEL_WECHAT_API_BASE_URL=$${FUEL_WECHAT_API_BASE_URL:-http://127.0.0.1:$(WECHAT_PORT)} \
	FUEL_WECHATPAY_BASE_URL=$${FUEL_WECHATPAY_BASE_URL:-http://127.0.0.1:$(WECHATPAY_PORT)} \
	FUEL_WECHATPAY_NOTIFY_URL=$${FUEL_WECHATPAY_NOTIFY_URL:-http://$(HOST):$(PORT)/v1/payments/wechat/notify}
RUN_ONLY :=
else
RUN_ENV :=
RUN_ONLY := -c wechat=0,wechatpay=0,sites=0
endif

.PHONY: run test lint bench venv postgres redis db web browser wrk speech mqtt migrate load clean-cache

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

# Redis for the rate limits shared by the workers (only when nothing answers on 127.0.0.1:6379).
redis:
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
		echo "Redis is down: starting redis-server on 127.0.0.1:6379"; \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null; \
		for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done; \
	fi

# Mosquitto for the payment announcements (devices/_voice.py; only when nothing answers on 127.0.0.1:1883).
mqtt:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then \
		echo "Mosquitto is down: starting it on 127.0.0.1:1883"; \
		mosquitto -d -c /etc/mosquitto/mosquitto.conf 2>/dev/null || mosquitto -d -p 1883; \
		for i in $$(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.2; done; \
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

# espeak-ng (Mandarin voice) for the payment announcements and sox to check them (devices/_voice.py);
# without them the announcement jobs fail and retry, and their tests skip with one line.
speech:
	@if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then \
		echo "installing espeak-ng and sox for the payment announcements"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox >/dev/null) \
		|| echo "espeak-ng could not be installed: announcements will fail and their tests skip"; \
	fi

# wrk (Debian package) for the load sections of `make bench`; without it they say so and FAIL their bar.
wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
		echo "installing wrk for the load benchmarks"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
		|| echo "wrk could not be installed: the load benchmarks will be skipped"; \
	fi

# uvicorn flags, each a limit on what one client can hold:
# --no-proxy-headers: the app alone decides whom to believe in X-Forwarded-For (FUEL_TRUSTED_PROXIES);
#   uvicorn's default trusts it from loopback, which let any local client pick its own address.
# --http api._http:H11WithHeadTimeout: uvicorn's h11 protocol plus a deadline for the request head,
#   FUEL_HEADER_TIMEOUT_S (default 10 s: a phone on a poor mobile link sends a head in well under a
#   second; 10 s leaves room for a retransmit or two and stops clients that trickle headers a byte at a
#   time from holding sockets; uvicorn has no such timeout of its own).
# --h11-max-incomplete-event-size 32768: a request head above 32 KiB is refused before the app sees
#   it (httptools has no such cap); the app answers 431 from 16 KiB (FUEL_MAX_HEADER_BYTES), so the
#   clear JSON answer comes first and this hard cap backs it.
# --timeout-keep-alive 5: an idle keep-alive connection is closed after 5 s; the map page and the
#   mini-program reuse a connection within a burst of requests, and longer only holds sockets.
# --limit-concurrency 200: past 200 open connections and tasks per worker new ones get a 503 at once.
# FUEL_BIND_HOST tells the app where it listens: the development secrets are accepted on loopback only.
UVICORN_FLAGS := --no-access-log --no-proxy-headers --http api._http:H11WithHeadTimeout \
	--h11-max-incomplete-event-size 32768 --timeout-keep-alive 5 --limit-concurrency 200

# The processes are the Procfile's lines (api; wechat, the fake WeChat server, in development only),
# started together by honcho: Ctrl-C stops them all.
run: venv redis mqtt load web speech
	$(RUN_ENV) HOST=$(HOST) API_PORT=$(PORT) WORKERS=$(WORKERS) WECHAT_PORT=$(WECHAT_PORT) WECHATPAY_PORT=$(WECHATPAY_PORT) SITES_CONTROL_PORT=$(SITES_CONTROL_PORT) UVICORN_FLAGS="$(UVICORN_FLAGS)" \
		$(VENV)/bin/honcho start -f Procfile $(RUN_ONLY)

# The Python sources ruff checks: every product package (pyproject's packages), the tests and the benchmarks.
PY_SOURCES := geo ingest api store config payments wechat fuelling forecourt devices backoffice loyalty risk tests benchmarks
lint: venv
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy

# The tests run in TEST_WORKERS processes (pytest-xdist): most of their time is spent waiting on servers,
# processes and the database they start, so three processes on two cores halve the wall time. Each
# process has its own throwaway databases, ports and rate-limit windows; a test file runs whole in one process
# (--dist loadfile), so its module fixtures (servers, simulators) start once.
TEST_WORKERS ?= 3
test: venv postgres redis mqtt web browser speech lint
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: venv redis load wrk
	$(PY) -m benchmarks $(BENCH_ARGS)

clean-cache:
	rm -rf .cache
