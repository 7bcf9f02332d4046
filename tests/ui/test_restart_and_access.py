"""A page left open over a server restart reconnects and carries on; a network that is not
the operator's is refused, and the page says so."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.conftest import docker_ps
from tests.served import Served, start_server, stop_server
from tests.ui.dashboard import open_page, start_job, text_of, wait_final, wait_for

pytestmark = pytest.mark.docker

NOT_LOOPBACK = 'metrics_allow = ["10.99.0.0/16"]'


def rows(driver: webdriver.Chrome) -> list[str]:
    return [
        str(tr.get_attribute("data-job-id"))
        for tr in driver.find_elements(By.CSS_SELECTOR, "#jobs-body tr")
    ]


def test_the_page_carries_on_over_a_server_restart(
    tmp_path: Path, busybox_image: str, page: webdriver.Chrome
) -> None:
    root = tmp_path / "server"
    served: Served | None = start_server(root)
    assert served is not None
    port = int(served.base_url.rsplit(":", 1)[1])
    instance = served.instance
    try:
        before = start_job(served, "echo before")
        wait_final(served, before)
        open_page(page, served, "#/jobs")
        wait_for(page, lambda d: before in rows(d))
        page.execute_script("window.__sameDocument = true")

        assert stop_server(served) == 0
        served = None
        wait_for(page, lambda d: text_of(d, "#conn") == "reconnecting…")
        served = start_server(root, port=port)  # the same port and data folder
        wait_for(page, lambda d: text_of(d, "#conn") == "live", timeout=30)
        after = start_job(served, "echo after")
        row = f"tr[data-job-id='{after}']"
        wait_for(page, lambda d: text_of(d, f"{row} .c-status") == "70 Job completed")
        assert rows(page)[:2] == [after, before]

        # Restarted with the operator's networks narrowed: the open page says why it stops.
        assert stop_server(served) == 0
        served = None
        served = start_server(root, port=port, server_extra=NOT_LOOPBACK)
        wait_for(page, lambda d: page.find_element(By.ID, "denied").is_displayed(), timeout=30)
        refusal = text_of(page, "#denied")
        assert "Access refused (403)" in refusal and "metrics_allow" in refusal, refusal
        assert text_of(page, "#conn") == "refused"
        assert not page.find_element(By.ID, "view").is_displayed()
        assert page.execute_script("return window.__sameDocument") is True  # never reloaded
    finally:
        if served is not None:
            assert stop_server(served) == 0, (root / "server.log").read_text()
        assert docker_ps(f"label=localcompute.instance={instance}") == []


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_network_not_the_operators_is_refused(tmp_path: Path, busybox_image: str) -> None:
    served = start_server(tmp_path / "server", server_extra=NOT_LOOPBACK)
    try:
        for path in ("/ui/", "/ui/static/app.js", "/ui/api/overview", "/ui/events"):
            status, body = get(served.base_url + path)
            assert status == 403, path
            assert "see [server] metrics_allow" in json.loads(body)["error"], body
        assert get(served.base_url + "/")[0] == 200  # the provider's API is everyone's
    finally:
        assert stop_server(served) == 0
