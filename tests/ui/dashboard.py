"""What the ui layer's tests drive: a headless Chromium on the dashboard of a served server,
jobs started as a consumer starts them, and gates inside the job's container.

Used by the tests (conftest.py) and by scripts/screenshots, which remakes the committed
pictures in docs/screenshots from the same scenes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import BUSYBOX_IMAGE
from tests.served import Consumer, Served

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900
SCREENSHOTS = ("overview", "jobs", "job", "failed-job")  # docs/screenshots/<name>.png
T = TypeVar("T")


class BrowserMissing(Exception):
    """Chromium or its driver is not installed where the layer looks for them."""


def chrome(downloads: Path) -> webdriver.Chrome:
    """A headless Chromium of this host, at 1280x900, saving downloads in `downloads`.

    The binaries are named, so selenium-manager never looks for (or downloads) others.
    """
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} missing: the ui tests need Debian's chromium and its "
            "driver (apt-get install chromium chromium-driver; scripts/run test-ui does it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, Chromium's own sandbox cannot start
        "--disable-gpu",
        f"--window-size={WIDTH},{HEIGHT}",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    # The window's size includes what headless Chromium keeps of a browser's frame: the page
    # itself is made 1280x900, the size of the screenshots.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def download_to(driver: webdriver.Chrome, folder: Path) -> None:
    """Downloads from now on go to `folder` (the running test's own)."""
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)}
    )


def wait_for(
    driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], T], timeout: float = 20
) -> T:
    """What `check` returns once it is truthy; a stale element (the page redrew it) is a
    "not yet"."""
    try:
        stale = [StaleElementReferenceException]
        return WebDriverWait(driver, timeout, 0.02, ignored_exceptions=stale).until(check)
    except TimeoutException:
        raise AssertionError(
            f"the page never showed what the test waited for; it shows:\n{page_text(driver)}"
            f"\nits console:\n{console(driver)}"
        ) from None


def page_text(driver: webdriver.Chrome) -> str:
    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)[:4000]
    except Exception as e:  # a page that is gone says so rather than hiding the failure
        return f"(no page: {e})"


def console(driver: webdriver.Chrome) -> str:
    try:
        said = driver.get_log("browser")  # type: ignore[no-untyped-call]
        return "\n".join(str(e.get("message")) for e in said)
    except Exception:
        return ""


def element(driver: webdriver.Chrome, css: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def text_of(driver: webdriver.Chrome, css: str) -> str:
    """The text a person reads in the first element `css` finds ("" if none), read in one
    go: the page may redraw the element between two looks at it."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''"
    return str(driver.execute_script(script, css)).strip()


def open_page(driver: webdriver.Chrome, served: Served, route: str = "#/") -> None:
    """The dashboard at `route`, read afresh (a new document, not a hash change), with
    its live stream open."""
    driver.get("about:blank")
    driver.get(f"{served.base_url}/ui/{route}")
    wait_for(driver, lambda d: text_of(d, "#conn") == "live")


def shoot(driver: webdriver.Chrome, folder: Path, name: str, copy_to: Path | None) -> Path:
    """A screenshot of the window into `folder` (and `copy_to`, to remake docs/screenshots)."""
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy_to / path.name)
    return path


# -- jobs -------------------------------------------------------------------------------


def algorithm(script: str) -> dict[str, Any]:
    name, _, tag = BUSYBOX_IMAGE.partition(":")
    return {
        "meta": {
            "rawcode": script,
            "container": {"image": name, "tag": tag, "entrypoint": "sh $ALGO"},
        }
    }


def start_job(served: Served, script: str, **extra: Any) -> str:
    """A job of `script` (sh on busybox), signed and started as a consumer starts one."""

    async def start() -> str:
        async with aiohttp.ClientSession() as session:
            status, body = await Consumer(session, served.base_url).start(
                algorithm(script), **extra
            )
        assert status == 200, body
        return str(body[0]["jobId"])

    return asyncio.run(start())


def job_status(served: Served, job_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        url = f"{served.base_url}/ui/api/jobs/{job_id}"
        async with aiohttp.ClientSession() as session, session.get(url) as r:
            assert r.status == 200, await r.text()
            found: dict[str, Any] = await r.json()
            return found

    return asyncio.run(read())


def wait_final(served: Served, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = job_status(served, job_id)
        if job["final"]:
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not end: {job['statusText']}"
        time.sleep(0.05)


class Gate:
    """A point where a job's algorithm waits (`wait`, a line of its script) until the test
    lets it on (`open`): a file the test makes inside the running container, by docker
    exec. The algorithm has no network and sees nothing of this host: this is the one
    way in, and it keeps "the job runs" on the screen for exactly as long as the test
    looks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.job_id = ""
        self.opened = False

    @property
    def wait(self) -> str:
        return f"until [ -e /tmp/gate-{self.name} ]; do sleep 0.02; done"

    def container(self) -> str:
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-q",
                "--filter",
                f"label=localcompute.job_id={self.job_id}",
                "--filter",
                "label=localcompute.stage=algorithm",
                "--filter",
                "status=running",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def open(self, timeout: float = 30) -> None:
        assert self.job_id, "the gate's job was never named"
        deadline = time.monotonic() + timeout
        while not (container := self.container()):
            assert time.monotonic() < deadline, f"job {self.job_id}'s algorithm never ran"
            time.sleep(0.05)
        done = subprocess.run(
            ["docker", "exec", container, "sh", "-c", f": > /tmp/gate-{self.name}"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        self.opened = True


class Gates:
    """The gates of one test; at its end every one left shut is opened (the test failed
    halfway) and its jobs are waited for, so the server stops with nothing running."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.made: list[Gate] = []

    def __call__(self, name: str) -> Gate:
        gate = Gate(name)
        self.made.append(gate)
        return gate

    def release(self) -> None:
        for gate in self.made:
            if gate.job_id and not gate.opened:
                with contextlib.suppress(AssertionError):  # it ended, or never got there
                    gate.open(timeout=5)
        for job_id in {g.job_id for g in self.made if g.job_id}:
            wait_final(self.served, job_id)
