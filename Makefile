# Shortcuts; scripts/run does the set-up (venv, Docker, helper image) for setup, test and serve.
.PHONY: setup test test-clients serve lint format typecheck bench check

setup:
	scripts/run setup

test:
	scripts/run test

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

check: lint typecheck test
