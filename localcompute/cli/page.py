"""`run --ui`: the job's page on the dashboard, opened in the user's browser if it has one."""

from __future__ import annotations

import os
import sys


def page_url(server: str, job_id: str) -> str:
    return f"{server.rstrip('/')}/ui/#/jobs/{job_id}"


def has_a_screen() -> bool:
    """Whether a graphical browser can open: without one, webbrowser would start a text
    browser (lynx, w3m) in this very terminal, over the job's output."""
    if os.environ.get("LOCALCOMPUTE_NO_BROWSER"):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_page(url: str) -> bool:
    """Open `url` in a browser, when there is a screen to show it on (the URL is printed
    either way); whether one was opened."""
    if not has_a_screen():
        return False
    import webbrowser  # here: most runs never open a page, and it takes a while to load

    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False
