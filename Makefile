# Keyway: the verbs people type. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV = $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
REPLICAS ?= 1
PYTEST_ARGS ?=

.PHONY: help
help: ## list the verbs
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	@python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

.venv/.synced: $(UV) pyproject.toml uv.lock $(wildcard services/*/pyproject.toml) shared/pyproject.toml sdks/python/pyproject.toml tools/keyway-cli/pyproject.toml
	@$(UV) sync --frozen --quiet
	@touch $@

.PHONY: install
install: .venv/.synced ## create the environment from the lock file

# The built-in provider catalog as services read it (keyway_shared/providers/builtin.json), made from
# the YAML files people edit; `make up` remakes it when they changed, a unit test fails when it is stale.
PROVIDERS_DIR = shared/keyway_shared/providers
$(PROVIDERS_DIR)/builtin.json: $(PROVIDERS_DIR)/providers.yaml $(wildcard $(PROVIDERS_DIR)/providers.d/*.yaml) | .venv/.synced
	@$(UV) run --frozen python -m keyway_shared.providers.builtin_json write
	@touch $@

.PHONY: up
# The environment's python itself, not `uv run`: killed hard, make takes the launcher with it (a
# parent-death signal), where a uv process in between would outlive make and keep the stack up.
up: install $(PROVIDERS_DIR)/builtin.json ## start the whole stack (embedded MongoDB unless MONGODB_URL is set); Ctrl-C stops it
	@.venv/bin/python deploy/local/up.py --replicas $(REPLICAS)

tests/sdk/node_modules/.package-lock.json: tests/sdk/package-lock.json
	@cd tests/sdk && npm ci --no-audit --no-fund --silent

tests/deploy/node_modules/.package-lock.json: tests/deploy/package-lock.json
	@cd tests/deploy && npm ci --no-audit --no-fund --silent

.PHONY: test-deps
test-deps: install tests/sdk/node_modules/.package-lock.json tests/deploy/node_modules/.package-lock.json ## what the browser, SDK and deploy tests need: Chromium, the pinned npm SDKs, kubectl, the Compose schema, RabbitMQ's management API
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v kubectl >/dev/null || { echo "installing Debian's kubernetes-client (kubectl) for the deploy tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; }
	@# Tests list what their namespace left on the broker: the management API answers in milliseconds,
	@# the rabbitmqctl fallback in most of a second a call (minutes over the suite).
	@command -v rabbitmq-plugins >/dev/null && rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null 2>&1 || true

.PHONY: test
test: test-deps ## run the whole test suite against the real RabbitMQ and MongoDB-wire server
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: install ## the inner loop: unit and integration tests, without e2e, browser or deploy tests
	@$(UV) run --frozen pytest -m "not e2e and not browser and not deploy" $(PYTEST_ARGS)

.PHONY: validate-deploy
validate-deploy: install tests/deploy/node_modules/.package-lock.json ## check deploy/: kustomize render, Kubernetes schemas, checkov, the Compose schema, an image rehearsal
	@command -v kubectl >/dev/null || { echo "installing Debian's kubernetes-client (kubectl)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; }
	@$(UV) run --frozen pytest -m deploy tests/deploy $(PYTEST_ARGS)

.PHONY: compose-env
compose-env: ## write deploy/.env for docker compose: a new encryption key and pinned dev keys (kept if present)
	@if [ -f deploy/.env ]; then echo "deploy/.env exists; keeping it"; else \
		python3 -c 'import base64, os, uuid; print("COMPOSE_PROJECT_NAME=keyway"); print("KEYWAY_ENCRYPTION_KEY=" + base64.b64encode(os.urandom(32)).decode()); print("KEYWAY_SECRET_KEY_DEV=" + str(uuid.uuid4())); print("KEYWAY_PUBLIC_KEY_DEV=" + str(uuid.uuid4()))' > deploy/.env; \
		chmod 600 deploy/.env; echo "wrote deploy/.env (keep it: the encryption key opens every stored credential)"; fi
	@grep -E '^KEYWAY_(SECRET|PUBLIC)_KEY_DEV=' deploy/.env | sed 's/^/  /'

.PHONY: lint
lint: install ## ruff and mypy --strict
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy

.PHONY: fmt
fmt: install ## format the code
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

.PHONY: schemas
schemas: install ## regenerate docs/schemas/*.json and docs/asyncapi.yaml from the event models
	@$(UV) run --frozen python -m keyway_shared.events.schemas write

.PHONY: providers-json
providers-json: install ## regenerate shared/keyway_shared/providers/builtin.json from the provider YAML files
	@$(UV) run --frozen python -m keyway_shared.providers.builtin_json write

.PHONY: openapi
openapi: install ## regenerate docs/openapi.json from the gateway's route table
	@$(UV) run --frozen python -m auth_gateway.openapi write

.PHONY: config-doc
config-doc: install ## regenerate docs/configuration.md from the services' settings classes
	@$(UV) run --frozen python -m keyway_cli.config_reference write

.PHONY: bench
bench: install ## run the benchmarks under bench/ and print their figures
	@$(UV) run --frozen python bench/run.py

.PHONY: clean
clean: ## remove local data (embedded MongoDB) and caches
	rm -rf .data test-output .pytest_cache .mypy_cache .ruff_cache
