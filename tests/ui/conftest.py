"""The ui layer: the operator's dashboard in a real headless Chromium, on a served server
on the real Docker engine. Each test asserts what a person sees on the page.

LOCALCOMPUTE_SCREENSHOTS=<folder> (scripts/screenshots sets it to docs/screenshots) copies
the screenshots the tests take there too.
"""

from __future__ import annotations

import http.server
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver

from tests.served import Served, running_server, serve_in_a_thread
from tests.ui.dashboard import BrowserMissing, Gates, chrome, console, download_to

# A second environment beside the tests' "test": the overview shows two cards, the jobs
# filter has two to choose from.
BATCH = """
[[environments]]
id = "batch"
description = "Long batch jobs: two cores, no network"
max_jobs = 1
cpu = 2
ram_gb = 2
disk_gb = 2
max_job_duration = 600
"""
# A dataset whose file is gone (its URL answers 404): a job on it fails at 31.
GONE_DID = "did:op:" + "5e" * 32


class _Gone(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404, "gone")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def gone_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gone)
    serve_in_a_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_port}/measurements.csv"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def ui_server(
    tmp_path_factory: pytest.TempPathFactory, busybox_image: str, gone_url: str
) -> Iterator[Served]:
    """One served server for the layer's tests that leave it as it was."""
    gone = f'[[datasets]]\ndid = "{GONE_DID}"\nfiles = ["{gone_url}"]\n'
    root = tmp_path_factory.mktemp("ui")
    with running_server(root, environments_first=BATCH, extra=gone) as served:
        yield served


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the layer (about a second to start)."""
    try:
        browser = chrome(tmp_path_factory.mktemp("downloads"))
    except BrowserMissing as e:
        pytest.fail(str(e))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(
    driver: webdriver.Chrome, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[webdriver.Chrome]:
    """The browser, downloading into this test's folder; what its console said is printed
    when the test fails."""
    download_to(driver, tmp_path)
    yield driver
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- the browser's console:\n{console(driver)}")
    driver.get("about:blank")  # the page's streams end with the test


@pytest.fixture
def container_gates(ui_server: Served) -> Iterator[Gates]:
    made = Gates(ui_server)
    yield made
    made.release()


@pytest.fixture(scope="session")
def screenshots_to() -> Path | None:
    """Where scripts/screenshots wants the pictures copied; None: only the test's folder."""
    folder = os.environ.get("LOCALCOMPUTE_SCREENSHOTS")
    return Path(folder) if folder else None
