# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run up down seed test lint typecheck schemas bootstrap bench

bootstrap:
	@scripts/bootstrap

run: bootstrap  ## set up and run everything in the foreground (Ctrl-C stops)
	uv run python scripts/devctl.py run

up: bootstrap  ## the same in the background; returns when all six are ready
	uv run python scripts/devctl.py up

down:  ## stop what `make up` started
	uv run python scripts/devctl.py down

seed: bootstrap  ## load the demo data (idempotent)
	uv run python scripts/devctl.py seed

lint:
	uv run ruff check .
	uv run ruff format --check .

typecheck:
	uv run mypy proto/src services/*/src

schemas:  ## regenerate proto/schemas from the event declarations
	uv run python -m centralino_proto.schemas

test: bootstrap lint typecheck  ## the whole suite
	uv run pytest

bench: bootstrap
	uv run python bench/run_all.py
