"""Each page of the dashboard as an operator sees it, in pictures: the overview while a
job runs, the jobs table, a running job with its output, a failed job.

The pictures go to the test's folder; scripts/screenshots copies them to docs/screenshots
(LOCALCOMPUTE_SCREENSHOTS), where they are committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium import webdriver

from tests.served import Served
from tests.ui.conftest import GONE_DID
from tests.ui.dashboard import (
    SCREENSHOTS,
    Gates,
    element,
    open_page,
    shoot,
    start_job,
    text_of,
    wait_final,
    wait_for,
)

pytestmark = pytest.mark.docker

TRAIN = """
echo "epoch 1/3  loss 0.912  accuracy 0.61"
echo "epoch 2/3  loss 0.544  accuracy 0.78"
{wait}
echo "epoch 3/3  loss 0.301  accuracy 0.88"
echo '{{"accuracy": 0.88}}' > $OUTPUTS/metrics.json
"""
COUNT = """
echo "counting rows of /data/inputs"
wc -l /data/inputs/*/0
wc -l /data/inputs/*/0 > $OUTPUTS/rows.txt
"""
CRASH = """
echo "loading model weights from /data/inputs"
echo "error: /data/inputs/model.bin: no such file" >&2
exit 1
"""


def test_each_page_as_an_operator_sees_it(
    ui_server: Served,
    page: webdriver.Chrome,
    container_gates: Gates,
    tmp_path: Path,
    screenshots_to: Path | None,
) -> None:
    finished = [start_job(ui_server, COUNT), start_job(ui_server, CRASH)]
    finished.append(start_job(ui_server, "echo never runs", did=GONE_DID))
    done, crashed, gone = (wait_final(ui_server, j) for j in finished)
    assert (done["status"], crashed["terminationReason"], gone["status"]) == (70, "failed", 31)
    gate = container_gates("train")
    gate.job_id = start_job(ui_server, TRAIN.format(wait=gate.wait), environment="batch")

    open_page(page, ui_server, "#/")
    wait_for(page, lambda d: element(d, "[data-card=statuses] [data-status='40']"))
    assert text_of(page, "[data-environment=batch] [data-count=running]") == "1"
    shots = [shoot(page, tmp_path, "overview", screenshots_to)]

    page.get(f"{ui_server.base_url}/ui/#/jobs")
    wait_for(page, lambda d: element(d, f"tr[data-job-id='{gate.job_id}'] .seg.ph-algorithm"))
    assert "Data provisioning failed" in text_of(page, f"tr[data-job-id='{gone['jobId']}']")
    shots.append(shoot(page, tmp_path, "jobs", screenshots_to))

    page.get(f"{ui_server.base_url}/ui/#/jobs/{gate.job_id}")
    wait_for(page, lambda d: "epoch 2/3" in text_of(d, "#log"))
    shots.append(shoot(page, tmp_path, "job", screenshots_to))
    gate.open()

    page.get(f"{ui_server.base_url}/ui/#/jobs/{gone['jobId']}")
    wait_for(page, lambda d: "404" in text_of(d, "#configuration-log"))
    assert "Data provisioning failed" in text_of(page, "#failure")
    shots.append(shoot(page, tmp_path, "failed-job", screenshots_to))

    assert [p.stem for p in shots] == list(SCREENSHOTS)
    assert all(p.stat().st_size > 10_000 for p in shots)
    assert wait_final(ui_server, gate.job_id)["terminationReason"] == "completed"
