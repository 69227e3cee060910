# Lip-Sync Studio. `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
PORT ?= 8000

# Settings may live in a .env file (see .env.example); the environment still wins.
-include .env
export

.PHONY: install run test lint format bench lock clean

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --inexact keeps uv itself, which the lock file does not list.
$(VENV)/.synced: uv.lock pyproject.toml | $(BIN)/uv
	$(BIN)/uv sync --frozen --inexact --python $(BIN)/python
	touch $@

install: $(VENV)/.synced

run: export DEBUG := $(or $(DEBUG),1)
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py demo_setup --port $(PORT)
	exec $(BIN)/python manage.py runstudio --port $(PORT)

# Tests use their own throwaway secret; nothing from a developer's .env leaks into them.
test: export SECRET_KEY := test-only-secret-key
test: export DEBUG := 0
test: export ALLOWED_HOSTS := localhost,127.0.0.1,testserver
test: export KLING_API_KEY :=
test: export KLING_ACCESS_KEY :=
test: export KLING_SECRET_KEY :=
test: export KLING_DEMO :=
test: export DATABASE_URL := $(TEST_DATABASE_URL)
# Tests empty the caches they use, so not a developer's Redis (Redis tests use TEST_REDIS_URL).
test: export CACHE_URL :=
test: export DJANGO_ALLOW_ASYNC_UNSAFE := true
test: install lint
	./scripts/ensure-chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy's Django plugin loads the settings, which want a secret and (with DEBUG off) a host;
# nothing else reads them here.
lint: export SECRET_KEY := lint-only-secret-key
lint: export ALLOWED_HOSTS := localhost
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: export SECRET_KEY := bench-only-secret-key
bench: export DEBUG := 0
bench: export ALLOWED_HOSTS := localhost,127.0.0.1
bench: install
	$(BIN)/python scripts/bench.py

lock: $(BIN)/uv
	$(BIN)/uv lock

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
