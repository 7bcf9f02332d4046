"""The jobs table: its filters and id search (kept in the address), and a job's row that
appears and changes as its status does, without a reload, within 200 ms of the change."""

from __future__ import annotations

from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.served import Served
from tests.ui.dashboard import (
    Gates,
    element,
    open_page,
    start_job,
    text_of,
    wait_final,
    wait_for,
)

pytestmark = pytest.mark.docker

# What a person waits for at most between a status change and its showing on the page.
SHOWN_WITHIN_MS = 200


def classes(driver: webdriver.Chrome, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).get_attribute("class"))


def rows(driver: webdriver.Chrome) -> list[str]:
    return [
        str(tr.get_attribute("data-job-id"))
        for tr in driver.find_elements(By.CSS_SELECTOR, "#jobs-body tr")
    ]


def test_the_filters_and_the_id_search_choose_the_rows(
    ui_server: Served, page: webdriver.Chrome
) -> None:
    done, other = start_job(ui_server, "echo fine"), start_job(ui_server, "echo fine too")
    crashed = start_job(ui_server, "echo broken >&2; exit 3", environment="batch")
    for job in (done, other, crashed):
        wait_final(ui_server, job)

    open_page(page, ui_server, "#/jobs?environment=batch")
    wait_for(page, lambda d: crashed in rows(d))
    assert done not in rows(page)
    assert Select(page.find_element(By.NAME, "environment")).first_selected_option.text == "batch"
    row = f"tr[data-job-id='{crashed}']"
    assert "r-failed" in classes(page, row)
    assert text_of(page, f"{row} .c-status") == "70 Algorithm failed"
    assert text_of(page, f"{row} .c-exit") == "3"
    assert text_of(page, f"{row} .c-reason") == "failed"
    titles = [s.get_attribute("title") for s in page.find_elements(By.CSS_SELECTOR, f"{row} .seg")]
    assert any(str(t).startswith("algorithm: ") and str(t).endswith(" s") for t in titles), titles

    # Another environment and a status: the address keeps them, a reload shows the same.
    Select(page.find_element(By.NAME, "environment")).select_by_value("test")
    Select(page.find_element(By.NAME, "status")).select_by_value("70")
    wait_for(page, lambda d: {done, other} <= set(rows(d)) and crashed not in rows(d))
    assert "environment=test" in page.current_url and "status=70" in page.current_url
    assert all(
        text_of(page, f"tr[data-job-id='{j}'] .c-status").startswith("70 ") for j in rows(page)
    )
    search = page.find_element(By.NAME, "q")
    search.send_keys(done[:10])
    wait_for(page, lambda d: rows(d) == [done])  # as it is typed
    assert f"q={done[:10]}" in page.current_url
    assert "r-done" in classes(page, f"tr[data-job-id='{done}']")

    page.refresh()
    wait_for(page, lambda d: rows(d) == [done])
    assert page.find_element(By.NAME, "q").get_attribute("value") == done[:10]

    page.find_element(By.NAME, "q").send_keys("zz")  # not an id's digits
    wait_for(page, lambda d: "not valid" in text_of(d, ".table-note"))
    assert rows(page) == []


# In the page: when each status of each row first showed, and when each event came.
WATCH = """
window.__shown = {};
window.__events = [];
const watching = new EventSource("events");
watching.addEventListener("status", (e) => {
  const event = JSON.parse(e.data);
  window.__events.push({ jobId: event.jobId, status: event.status, at: event.at });
});
new MutationObserver(() => {
  for (const badge of document.querySelectorAll("#jobs-body tr .status")) {
    const key = badge.closest("tr").dataset.jobId + " " + badge.dataset.status;
    if (!(key in window.__shown)) window.__shown[key] = Date.now();
  }
}).observe(document.getElementById("view"), { subtree: true, childList: true });
window.__watching = watching;
"""


def test_a_new_job_and_its_statuses_show_without_a_reload(
    ui_server: Served, page: webdriver.Chrome, container_gates: Gates
) -> None:
    open_page(page, ui_server, "#/jobs")
    page.execute_script(WATCH)
    wait_for(page, lambda d: d.execute_script("return window.__watching.readyState") == 1)
    page.execute_script("window.__sameDocument = true")

    gate = container_gates("hold")
    job = gate.job_id = start_job(ui_server, gate.wait)
    row = f"tr[data-job-id='{job}']"
    wait_for(page, lambda d: rows(d)[:1] == [job])  # a new job goes on top
    page.execute_script(f'window.__row = document.querySelector("{row}")')
    wait_for(page, lambda d: text_of(d, f"{row} .c-status") == "40 Running algorithm")
    assert "r-running" in classes(page, row)
    gate.open()
    wait_for(page, lambda d: text_of(d, f"{row} .c-status") == "70 Job completed")
    wait_for(page, lambda d: element(d, f"{row} .seg.ph-publish"))  # its timeline, complete
    assert text_of(page, f"{row} .c-exit") == "0"

    same = f'return window.__sameDocument && window.__row === document.querySelector("{row}")'
    assert page.execute_script(same) is True  # the row was changed in place, never reloaded
    events: list[dict[str, Any]] = page.execute_script("return window.__events")
    shown: dict[str, float] = page.execute_script("return window.__shown")
    mine = [e for e in events if e["jobId"] == job]
    assert [e["status"] for e in mine][-4:] == [40, 50, 60, 70], mine
    late = {e["status"]: shown[f"{job} {e['status']}"] - 1000 * e["at"] for e in mine}
    print(f"from each status change to the page, ms: {late}")
    assert max(late.values()) < SHOWN_WITHIN_MS, late
