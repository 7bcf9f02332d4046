"""The overview: each environment's card with its limits, and bars that show a running
job's share of the slots and of the pool while it runs, without a reload."""

from __future__ import annotations

import pytest
from selenium import webdriver

from tests.served import Served
from tests.ui.dashboard import Gates, open_page, start_job, text_of, wait_final, wait_for

pytestmark = pytest.mark.docker


def width(driver: webdriver.Chrome, card: str, meter: str) -> str:
    css = f"[data-environment={card}] [data-meter={meter}] .meter-fill"
    return str(driver.execute_script(f"return document.querySelector('{css}').style.width"))


def test_the_environments_and_their_bars_follow_a_running_job(
    ui_server: Served, page: webdriver.Chrome, container_gates: Gates
) -> None:
    open_page(page, ui_server, "#/")
    batch = wait_for(page, lambda d: text_of(d, "[data-environment=batch]"))
    for shown in (
        "Long batch jobs: two cores, no network",
        "2 cores · 2 GiB RAM · 2 GiB disk · no GPU",  # per job
        "10 min",  # max duration
        "no network",
        "runc",
        "0 / 1 job",  # its one slot, free
    ):
        assert shown in batch, shown
    assert "1 core · 1 GiB RAM · 1 GiB disk · no GPU" in text_of(page, "[data-environment=test]")
    assert "loop" in text_of(page, "[data-card=server]")
    assert text_of(page, "[data-quota]") == "hard"
    assert [c.get_attribute("data-check") for c in page.find_elements("css selector", ".check")]
    assert width(page, "batch", "slots") == "0%"
    page.execute_script("window.__sameDocument = true")

    gate = container_gates("hold")
    gate.job_id = start_job(ui_server, gate.wait, environment="batch")
    # The job holds the environment's one slot and both of the host's cores.
    wait_for(page, lambda d: width(d, "batch", "slots") == "100%")
    assert width(page, "batch", "cpu") == "100%"
    assert width(page, "test", "slots") == "0%"
    wait_for(page, lambda d: text_of(d, "[data-environment=batch] [data-count=running]") == "1")
    assert "1 / 1 job" in text_of(page, "[data-environment=batch] [data-meter=slots]")
    assert "2 / 2 cores" in text_of(page, "[data-card=pool] [data-meter=cpu]")

    gate.open()
    wait_final(ui_server, gate.job_id)
    wait_for(page, lambda d: width(d, "batch", "slots") == "0%")
    assert width(page, "batch", "cpu") == "0%"
    assert page.execute_script("return window.__sameDocument") is True  # never reloaded
