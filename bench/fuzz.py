"""A longer fuzzing run than CI's: schemathesis against the three OpenAPI documents of a
served localcompute (the fake runtime: nothing runs in Docker), with a seed of its own.

Prints, per document, how many requests were sent and how many failed any of the checks
CI runs (no server error; status codes, content types and bodies as documented), and
each failure's report. Exit status 1 when anything failed.

    .venv/bin/python bench/fuzz.py [--examples 2000] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcompute.web.openapi import DIALECTS
from tests.fuzz.test_fuzz import NOBODY, run_schemathesis
from tests.served import fake_server


async def main(examples: int, seed: int) -> int:
    extra = f'[operator]\nallowed_providers = ["{NOBODY}"]\n'
    failed = False
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with fake_server(Path(tmp), extra=extra) as served:
            start = time.monotonic()

            async def one(dialect: str) -> tuple[str, int, bool, str]:
                return (dialect, *await run_schemathesis(served.base_url, dialect, examples, seed))

            # Each document's result as soon as it is in, so a long run shows its progress.
            for finished in asyncio.as_completed([one(d) for d in DIALECTS]):
                dialect, count, ok, text = await finished
                total += count
                failed = failed or not ok
                print(
                    f"{dialect}: {count} requests, {'no failure' if ok else 'FAILURES'}", flush=True
                )
                if not ok:
                    print(text[text.find("FAILURES") :] if "FAILURES" in text else text[-4000:])
            elapsed = time.monotonic() - start
    print(
        f"all: {total} requests in {elapsed:.0f} s, seed {seed}, {examples} examples per operation"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=2000, help="per operation")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.examples, args.seed)))
