"""Which Debian mirror this host's apt uses, read from /etc/apt.

The debootstrapped base image (see base.py) is made from that mirror, so that no
host name is written into the code. This module owns the parsing: deb822
.sources files, the one-line sources.list format, and /etc/os-release's codename.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterator
from pathlib import Path


def _os_release() -> dict[str, str]:
    values: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip("\"'")
    return values


def _deb822_paragraphs(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of a deb822 file, field names lower-cased; continuation lines joined."""
    fields: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0].isspace() and last:
            fields[last] += " " + line.strip()
        else:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()


def _is_release_suite(suites: list[str], codename: str) -> bool:
    """Whether these suites are the release's main archive (not its security archive)."""
    if any(s.endswith("-security") or "/updates" in s for s in suites):
        return False
    return not codename or any(s == codename or s.startswith(codename + "-") for s in suites)


def apt_mirror(etc_apt: Path = Path("/etc/apt"), codename: str | None = None) -> str | None:
    """The Debian mirror this machine's apt uses, so that no host name is written into the code.

    `codename` (default: this machine's, from /etc/os-release) picks the release's
    own archive among the configured ones; security archives never qualify.
    """
    if codename is None:
        codename = _os_release().get("VERSION_CODENAME", "")
    for name in sorted(glob.glob(str(etc_apt / "sources.list.d" / "*.sources"))):
        with contextlib.suppress(OSError):
            for stanza in _deb822_paragraphs(Path(name).read_text()):
                if stanza.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in stanza.get("types", "").split():
                    continue
                uris = stanza.get("uris", "").split()
                if uris and _is_release_suite(stanza.get("suites", "").split(), codename):
                    return uris[0]
    with contextlib.suppress(OSError):
        for line in (etc_apt / "sources.list").read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if not words or words[0] != "deb":
                continue
            words = words[1:]
            if words and words[0].startswith("["):  # [arch=amd64 signed-by=…]
                while words and not words[0].endswith("]"):
                    words = words[1:]
                words = words[1:]
            if len(words) >= 2 and _is_release_suite([words[1]], codename):
                return words[0]
    return None
