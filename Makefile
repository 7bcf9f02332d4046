# Shortcuts: scripts/run does the set-up (venv, Docker, helper image); CI runs `scripts/run test`.
.PHONY: setup test test-fast test-clients serve lint format typecheck bench check

setup:
	scripts/run setup

# What CI runs: lint, typecheck, then every test layer on the real Docker engine.
test:
	scripts/run test

# The unit and integration layers: no Docker, a few seconds.
test-fast:
	scripts/run test-fast

test-clients:
	scripts/run test tests/clients

serve:
	scripts/run serve

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

typecheck:
	.venv/bin/mypy

bench:
	.venv/bin/python bench/job_overhead.py

check: lint typecheck test-fast
