"""One job's page: its output live while it runs, the whole log after, its results to
download, why it failed, and an algorithm's markup shown as the text it is."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.served import Served
from tests.ui.conftest import GONE_DID
from tests.ui.dashboard import (
    Gates,
    element,
    job_status,
    open_page,
    start_job,
    text_of,
    wait_final,
    wait_for,
)

pytestmark = pytest.mark.docker


def log(driver: webdriver.Chrome) -> str:
    return str(driver.execute_script("return document.getElementById('log').textContent"))


def test_a_running_jobs_output_shows_line_by_line_then_whole(
    ui_server: Served, page: webdriver.Chrome, container_gates: Gates
) -> None:
    first, second = container_gates("first"), container_gates("second")
    script = f"""
    for i in $(seq 1 60); do echo "warming up $i"; done
    echo "line one"
    {first.wait}
    echo "line two"
    {second.wait}
    echo "line three"
    """
    job = first.job_id = second.job_id = start_job(ui_server, script)
    open_page(page, ui_server, f"#/jobs/{job}")
    page.execute_script("window.__sameDocument = true")

    wait_for(page, lambda d: "line one" in log(d))
    assert "line two" not in log(page)
    assert text_of(page, "#job-status") == "40 Running algorithm"
    assert text_of(page, "#log-state") == "live"
    # 61 lines overflow the box: it keeps its end in view as they come.
    box = "const l = document.getElementById('log'); return [l.scrollHeight, l.scrollTop]"
    height, top = page.execute_script(box)
    seen = page.execute_script("return document.getElementById('log').clientHeight")
    assert height > 2 * seen, "the output should overflow its box"
    assert height - top <= seen + 1, "the newest lines are out of sight"

    first.open()
    wait_for(page, lambda d: "line two" in log(d))
    assert "line three" not in log(page)
    assert not job_status(ui_server, job)["final"]

    second.open()
    wait_for(page, lambda d: text_of(d, "#job-status") == "70 Job completed")
    wait_for(page, lambda d: "complete" in text_of(d, "#log-state"))
    lines = log(page).splitlines()
    assert lines[-3:] == ["line one", "line two", "line three"] and len(lines) == 63
    assert not page.find_element(By.ID, "failure").is_displayed()
    assert page.execute_script("return window.__sameDocument") is True


MARKUP = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    "<b>bold?</b> &amp; &lt;",
]


def test_an_algorithms_markup_is_shown_as_text_and_never_runs(
    ui_server: Served, page: webdriver.Chrome, container_gates: Gates
) -> None:
    gate = container_gates("markup")
    printed = "\n".join(f"echo '{line}'" for line in MARKUP)
    name = "<img src=y onerror=window.__pwned=3>.txt"
    job = gate.job_id = start_job(ui_server, f'{printed}\necho hi > "$OUTPUTS/{name}"\n{gate.wait}')
    open_page(page, ui_server, f"#/jobs/{job}")
    wait_for(page, lambda d: MARKUP[-1] in log(d))  # live
    assert log(page).splitlines() == MARKUP
    gate.open()
    wait_for(page, lambda d: "complete" in text_of(d, "#log-state"))  # the published log
    assert log(page).splitlines() == MARKUP
    assert text_of(page, "#log").splitlines() == MARKUP  # as a person reads it
    assert name in text_of(page, "[data-card=results]")
    for css in ("#log *", "[data-card=results] img", "script:not([src])", "b"):
        assert page.find_elements(By.CSS_SELECTOR, css) == [], css
    assert page.execute_script("return typeof window.__pwned") == "undefined"


def test_a_failed_jobs_reason_is_prominent(ui_server: Served, page: webdriver.Chrome) -> None:
    crashed = start_job(ui_server, "echo 'cannot open model.bin' >&2; exit 1")
    gone = start_job(ui_server, "echo never runs", did=GONE_DID)
    wait_final(ui_server, crashed)
    wait_final(ui_server, gone)

    open_page(page, ui_server, f"#/jobs/{crashed}")
    wait_for(page, lambda d: "cannot open model.bin" in log(d))
    banner = page.find_element(By.ID, "failure")
    assert banner.is_displayed()
    assert "Algorithm failed" in banner.text and "exit code 1" in banner.text
    wait_for(page, lambda d: text_of(d, "#configuration-log"))  # what it fetched, and how

    page.get(f"{ui_server.base_url}/ui/#/jobs/{gone}")
    wait_for(page, lambda d: "HTTP 404" in text_of(d, "#configuration-log"))
    banner = page.find_element(By.ID, "failure")
    assert "Data provisioning failed" in banner.text and "HTTP 404" in banner.text
    assert text_of(page, "#job-status") == "31 Data provisioning failed"
    assert "never ran" in text_of(page, "#log-state")
    assert not page.find_element(By.ID, "log").is_displayed()


def test_a_result_downloads_from_its_link(
    ui_server: Served, page: webdriver.Chrome, tmp_path: Path
) -> None:
    body = b"localcompute\x00\x01\x02\xff result\n"
    octal = "".join(f"\\{b:03o}" for b in body)
    job = start_job(ui_server, f"printf '{octal}' > $OUTPUTS/data.bin")
    wait_final(ui_server, job)

    open_page(page, ui_server, f"#/jobs/{job}")
    wait_for(page, lambda d: element(d, "[data-type=receipt]"))
    row = "[data-type=output]"
    assert text_of(page, f"{row} td:first-child") == "data.bin"
    assert text_of(page, f"{row} td:nth-child(3)") == f"{len(body)} B"
    shown = page.find_element(By.CSS_SELECTOR, f"{row} .hash").get_attribute("title")
    assert shown == hashlib.sha256(body).hexdigest()
    page.find_element(By.CSS_SELECTOR, f"{row} a.download").click()
    saved = tmp_path / "data.bin"
    deadline = time.monotonic() + 10
    while not saved.exists() or list(tmp_path.glob("*.crdownload")):
        assert time.monotonic() < deadline, f"nothing downloaded: {list(tmp_path.iterdir())}"
        time.sleep(0.02)
    assert saved.read_bytes() == body

    # The receipt is listed, and shown pretty-printed once opened.
    assert "receipt.json" in text_of(page, "[data-type=receipt]")
    page.find_element(By.CSS_SELECTOR, "[data-card=receipt] summary").click()
    receipt = text_of(page, "#receipt")
    assert receipt.startswith('{\n  "payloadType": "application/vnd.in-toto+json",\n')
