# Shortcuts: scripts/run does the set-up (venv, Docker, helper image); CI runs `scripts/run test`.
.PHONY: setup test test-fast test-fuzz test-ui test-clients serve lint format typecheck bench bench-throughput bench-chaos check

setup:
	scripts/run setup

# What CI runs: lint, typecheck, then every test layer (fuzz included) on the real Docker engine.
test:
	scripts/run test

# The unit and integration layers: no Docker, under 15 s (docs/testing.md says how).
test-fast:
	scripts/run test-fast

# schemathesis's 10,000 requests to the OpenAPI documents (no Docker, minutes); `make test`
# runs them too.
test-fuzz:
	scripts/run test-fuzz

# The dashboard in a real headless Chromium on the real Docker engine (under a minute).
test-ui:
	scripts/run test-ui

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

# Parallel jobs against bare Docker's threaded rate, then 1,000 jobs queued at once
# (about 20 minutes on 2 cores).
bench-throughput:
	.venv/bin/python bench/throughput.py --case 16x4 --case 64x8 --queue 1000

# A long chaos run: random kills of a server under 400 jobs (a random seed, printed).
bench-chaos:
	.venv/bin/python bench/chaos.py --rounds 100 --jobs 400

check: lint typecheck test-fast
