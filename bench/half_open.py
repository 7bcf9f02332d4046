"""Half-open connections: one address holds 1,100 requests that never finish (a request line
and one header, then silence) against a server whose open-file limit is 1,024.

Starts `localcompute serve` (the real Docker engine) with RLIMIT_NOFILE at 1,024:1,024 and
[connections] file_limit = 0, so that it keeps that limit, the other [connections] keys at
their defaults. Then, from 127.0.0.2, a normal client sends N requests one after another,
each on a new connection (GET /api/services/computeEnvironments), in rounds: alone, then
while an attacker process holds 1,100 half-open connections from 127.0.0.1 (with
--reconnect S it opens again, about S seconds later, each one the server closes: a
retrying attacker, ~1,000 new connections a second at S = 1). The rounds alternate
so that other load on the host falls on both. Prints the requests answered and their p99.

    .venv/bin/python bench/half_open.py [-n 300] [--rounds 3] [--attackers 1100] [--reconnect 0]

The goal: every request answered, and the p99 under attack within 2 x the p99 alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import verdict
from localcompute.core.limit_settings import ConnectionSettings

FILE_LIMIT = 1024
CLIENT = "127.0.0.2"
ATTACKER = "127.0.0.1"
HALF_A_REQUEST = b"GET /api/services/computeEnvironments HTTP/1.1\r\nHost: localhost\r\n"
HEADER_TIMEOUT = ConnectionSettings().header_timeout  # the server's: its default
GIVE_UP_AFTER = 20  # unanswered requests in a row: the server is not answering at all


def raise_own_file_limit() -> None:
    """The bench's own processes hold more than 1,024 sockets."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


# -- the attacker (a process of its own, so that its work is not the client's) ----------


async def attack(host: str, port: int, count: int, reconnect: float) -> None:
    """Holds `count` half-open connections until stdin closes; then prints what it saw."""
    seen = {"opened": 0, "refused": 0, "closed": 0, "failed": 0, "open": 0, "longest": 0.0}
    ready = asyncio.Event()
    started = 0
    holding: dict[int, float] = {}  # slot → when its connection opened

    def begun() -> None:
        """Once per slot: ready when every slot has connected (or failed to) once."""
        nonlocal started
        started += 1
        if started == count:
            ready.set()

    async def hold(number: int, first: bool) -> None:
        """One half-open connection, until the server closes it."""
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
        except OSError:
            seen["failed"] += 1
            if first:
                begun()
            return
        seen["opened"] += 1
        seen["open"] += 1
        opened = holding[number] = time.monotonic()
        writer.write(HALF_A_REQUEST)
        if first:
            begun()
        try:
            answer = await reader.read()
        except ConnectionError:
            answer = b""
        seen["open"] -= 1
        del holding[number]
        seen["longest"] = max(seen["longest"], time.monotonic() - opened)
        seen["refused" if answer.startswith(b"HTTP/1.1 429") else "closed"] += 1
        writer.close()

    async def slot(number: int) -> None:
        await hold(number, first=True)
        while reconnect > 0:
            # Spread out, as many clients' retries would be, not a burst once a second.
            await asyncio.sleep(reconnect * random.uniform(0.5, 1.5))
            await hold(number, first=False)

    tasks = [asyncio.create_task(slot(number)) for number in range(count)]
    await ready.wait()
    await asyncio.sleep(0.5)  # the server has answered the first refusals
    print(json.dumps({"ready": seen}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    now = time.monotonic()
    seen["longest"] = max([seen["longest"], *(now - opened for opened in holding.values())])
    print(json.dumps({"done": seen}), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the client ---------------------------------------------------------------------------


async def measure(url: str, n: int) -> tuple[int, list[float]]:
    """(answered, latencies in seconds) of n requests, each on a new connection."""
    connector = aiohttp.TCPConnector(local_addr=(CLIENT, 0), force_close=True)
    timeout = aiohttp.ClientTimeout(total=2)
    answered: list[float] = []
    failed_in_a_row = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(n):
            start = time.perf_counter()
            try:
                async with session.get(url + "/api/services/computeEnvironments") as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                answered.append(time.perf_counter() - start)
                failed_in_a_row = 0
            else:
                failed_in_a_row += 1
                if failed_in_a_row == GIVE_UP_AFTER:
                    break
    return len(answered), answered


def p99(latencies: list[float]) -> float:
    if not latencies:
        return float("inf")
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def under_attack(
    url: str, n: int, attackers: int, reconnect: float, hold_for: float
) -> tuple[int, list[float], dict[str, float]]:
    """`measure` while an attacker process holds its connections; then what it saw."""
    port = int(url.rsplit(":", 1)[1])
    attack_args = ["--attackers", str(attackers), "--reconnect", str(reconnect)]
    attacker = subprocess.Popen(
        [sys.executable, __file__, "--attack", str(port), *attack_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert attacker.stdin is not None and attacker.stdout is not None
    try:
        attacker.stdout.readline()  # ready: every connection opened (or refused) once
        attacked = time.monotonic()
        answered, latencies = asyncio.run(measure(url, n))
        time.sleep(max(0.0, attacked + hold_for - time.monotonic()))
    finally:
        attacker.stdin.close()
        line = attacker.stdout.readline()
        attacker.wait(30)
    return answered, latencies, json.loads(line)["done"] if line else {}


def main(n: int, rounds: int, attackers: int, reconnect: float) -> None:
    raise_own_file_limit()
    alone: list[float] = []
    held: list[float] = []
    answered = {"alone": 0, "held": 0}
    seen: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lc-bench-half-open-") as tmp:
        work = Path(tmp)
        (work / "data.csv").write_text("x\n")
        (work / "c.toml").write_text(
            f'[server]\nhost = "127.0.0.1"\nport = 0\ndata_dir = "var"\n'
            f'[docker]\npull_policy = "never"\n'
            f'[[environments]]\nid = "bench"\nmax_jobs = 2\n'
            f'[provider]\ndataset_roots = ["{work}"]\n'
            # Only the connections are measured: the request buckets stay out of it.
            "[limits]\nexempt_loopback = true\n"
            "[connections]\nfile_limit = 0\n"
        )
        serve = ["serve", "--config", str(work / "c.toml"), "--log-level", "warning"]
        server = subprocess.Popen(
            [sys.executable, "-m", "localcompute", *serve],
            stdout=subprocess.PIPE,
            text=True,
            cwd=work,
            preexec_fn=server_file_limit,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[-1]
            limits = Path(f"/proc/{server.pid}/limits").read_text()
            [files] = [line for line in limits.splitlines() if line.startswith("Max open files")]
            print(f"server {url}, {' '.join(files.split())}")
            asyncio.run(measure(url, 50))  # warm-up
            # Alternating rounds, so that a neighbour's load on this host falls on both.
            for round_ in range(rounds):
                count, latencies = asyncio.run(measure(url, n))
                answered["alone"] += count
                alone += latencies
                # The last round lasts until the first connections held meet the deadline.
                hold_for = HEADER_TIMEOUT + 1 if round_ == rounds - 1 else 0
                count, latencies, done = under_attack(url, n, attackers, reconnect, hold_for)
                answered["held"] += count
                held += latencies
                for key, value in done.items():
                    merge = max if key == "longest" else float.__add__
                    seen[key] = merge(float(seen.get(key, 0)), float(value))
        finally:
            server.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(30)
            if server.poll() is None:
                server.kill()
    total = n * rounds
    print(
        f"attacker from {ATTACKER}: {attackers} half-open connections, "
        + (f"opened again {reconnect:g} s (± half) after" if reconnect else "each held until")
        + f" the server closes it; over {rounds} rounds "
        f"{seen.get('opened', 0):.0f} opened, {seen.get('refused', 0):.0f} refused with 429, "
        f"{seen.get('closed', 0):.0f} closed unanswered, {seen.get('failed', 0):.0f} could "
        f"not connect; the longest held {seen.get('longest', 0):.1f} s "
        f"(header_timeout {HEADER_TIMEOUT:g} s)"
    )
    print(f"client from {CLIENT}, {rounds} x {n} requests each way, a new connection each:")
    for name, latencies in (("alone", alone), ("held", held)):
        label = "alone:       " if name == "alone" else "under attack:"
        print(
            f"  {label} {answered[name]}/{total} answered"
            + (f", p99 {p99(latencies) * 1000:.2f} ms" if latencies else "")
        )
    ratio = p99(held) / p99(alone)
    met = answered["alone"] == answered["held"] == total and ratio <= 2
    print(f"p99 under attack / alone: {ratio:.2f} (p99 within 2x, all answered): {verdict(met)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300, help="requests of the client a round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds alone and under attack")
    parser.add_argument("--attackers", type=int, default=1100)
    parser.add_argument("--reconnect", type=float, default=0.0, help="0: never")
    parser.add_argument("--attack", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        raise_own_file_limit()
        asyncio.run(attack("127.0.0.1", args.attack, args.attackers, args.reconnect))
    else:
        main(args.n, args.rounds, args.attackers, args.reconnect)
