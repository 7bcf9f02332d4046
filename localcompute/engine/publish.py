"""Publishing: the results list of a job, in the order clients expect.

Outputs first (as the filter's manifest lists them), then algorithm.log
(algorithmLog), configure.log (configrationLog: the misspelling is what clients
expect), filter.log (filteringLog) and publish.log (publishLog). publish.log is
written before it is listed, so its size and hash are final.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from localcompute.core.models import ResultFile, ResultType
from localcompute.runtime.workspace import Workspace, file_digest

LOG_TYPES: tuple[tuple[str, ResultType], ...] = (
    ("configure.log", ResultType.CONFIGURATION_LOG),
    ("filter.log", ResultType.FILTERING_LOG),
)


def read_manifest(ws: Workspace) -> list[dict[str, object]]:
    """The filter's list of results; none when the filter did not finish."""
    try:
        data = json.loads(ws.filter_manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    results = data.get("results", []) if isinstance(data, dict) else []
    return [r for r in results if isinstance(r, dict)]


def _measured(path: Path, entry: dict[str, object]) -> tuple[int, str] | None:
    """The size and sha256 the filter measured as it moved the file (it runs after the
    algorithm, which cannot touch results/), if the file still has that size; else None:
    it is read again."""
    size, sha = entry.get("filesize"), entry.get("sha256")
    if not isinstance(size, int) or not isinstance(sha, str) or len(sha) != 64:
        return None
    try:
        found = path.lstat()
    except OSError:
        return None
    return (size, sha) if stat.S_ISREG(found.st_mode) and found.st_size == size else None


def build_results(
    ws: Workspace,
    *,
    algorithm_ran: bool,
    outputs: bool = True,
    algorithm_log: bool = True,
) -> list[ResultFile]:
    """List every result, write publish.log, and return the list with publish.log last."""
    results: list[ResultFile] = []
    log_lines: list[str] = []

    def add(path: Path, filename: str, kind: str, known: tuple[int, str] | None = None) -> None:
        if not path.exists():
            return
        size, sha = known if known is not None else file_digest(path)
        results.append(
            ResultFile(
                filename=filename,
                filesize=size,
                type=kind,
                sha256=sha,
                path=str(path.relative_to(ws.root)),
            )
        )
        log_lines.append(f"published {filename} ({kind}): {size} bytes, sha256 {sha}")

    for entry in read_manifest(ws) if outputs else []:
        name = str(entry.get("filename", ""))
        # The manifest names files in results/ only: nothing else may be published.
        if not name or "/" in name or name in (".", ".."):
            continue
        add(ws.results / name, name, ResultType.OUTPUT, _measured(ws.results / name, entry))
    if algorithm_ran and algorithm_log:
        add(ws.published_algorithm_log, "algorithm.log", ResultType.ALGORITHM_LOG)
    for name, kind in LOG_TYPES:
        add(ws.admin_log(name), name, kind)

    publish_log = ws.admin_log("publish.log")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    publish_log.write_text(
        f"{stamp} publishing {len(results) + 1} results\n" + "\n".join(log_lines) + "\n",
        encoding="utf-8",
    )
    add(publish_log, "publish.log", ResultType.PUBLISH_LOG)
    return results
