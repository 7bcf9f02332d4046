"""`localcompute run --reproduce RECEIPT ALGO --input FILE…` against the real engine: a
first `run` writes the receipt, a second runs its job again and compares the outputs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcompute.core.receipt import read_receipt
from tests.conftest import BUSYBOX_IMAGE, docker_ps
from tests.docker.test_cli import left_by_runs, localcompute

pytestmark = pytest.mark.docker

IMAGE = ["--image", BUSYBOX_IMAGE.split(":")[0]]
LIMITS = ["--cpu", "0.5", "--ram-gb", "0.5", "--max-time", "60"]
DETERMINISTIC = """
cat /data/inputs/*/0 > $OUTPUTS/copy.txt
wc -l /data/inputs/*/0 | tail -1 > $OUTPUTS/lines.txt
echo done > $OUTPUTS/done.txt
"""
# The time, to the nanosecond, and the host's uptime: never the same twice.
CLOCK = """
{ date +%s%N; cat /proc/uptime; } > $OUTPUTS/now.txt
cat /data/inputs/*/0 > $OUTPUTS/copy.txt
"""


@pytest.fixture
def work(tmp_path: Path, busybox_image: str) -> Iterator[Path]:
    (tmp_path / "a.csv").write_text("a,b\n1,2\n")
    (tmp_path / "b.csv").write_text("c,d\n3,4\n5,6\n")
    (tmp_path / "det.sh").write_text(DETERMINISTIC)
    (tmp_path / "clock.sh").write_text(CLOCK)
    yield tmp_path
    assert left_by_runs(tmp_path) == [], "a run left something behind"


def first_run(work: Path, algorithm: str, *inputs: str) -> Path:
    """`localcompute run` once: the receipt in its --out folder."""
    given = [a for i in inputs for a in ("--input", i)]
    done = localcompute("run", algorithm, *IMAGE, *LIMITS, *given, "--out", "first", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "first" / "receipt.json"


def reproduce(
    work: Path, receipt: Path, algorithm: str, *inputs: str
) -> subprocess.CompletedProcess[str]:
    given = [a for i in inputs for a in ("--input", i)]
    return localcompute(
        "run", "--reproduce", str(receipt), algorithm, *given, "--out", "again", cwd=work
    )


def job_id(out: str) -> str:
    """In "[   0.3s] job 6d90… in local (…)": the job's id."""
    line = next(line for line in out.splitlines() if "] job " in line)
    words = line.split()
    return words[words.index("job") + 1]


def test_a_deterministic_algorithm_is_reproduced_on_the_same_image_and_limits(
    work: Path,
) -> None:
    receipt = first_run(work, "det.sh", "a.csv", "b.csv")
    again = reproduce(work, receipt, "det.sh", "a.csv", "b.csv")
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert lines[-1] == "reproduced: 3 of 3 outputs identical"
    assert "signature holds, signed by 0x" in lines[0]
    image_id = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", BUSYBOX_IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert f"in local ({image_id})" in again.stdout  # run by the image's id, not its tag
    # The new job's own receipt: the same limits, the image by the same id.
    old = read_receipt(receipt.read_bytes())
    new = read_receipt((work / "again" / "receipt.json").read_bytes())
    for key in ("cpu", "ramBytes", "gpus", "maxDurationSeconds", "network"):
        assert (
            new.section("buildDefinition", "internalParameters")[key]
            == old.section("buildDefinition", "internalParameters")[key]
        )
    assert new.dependencies("image")[0]["digest"] == old.dependencies("image")[0]["digest"]
    assert docker_ps(f"label=localcompute.job_id={job_id(again.stdout)}") == []


def test_an_algorithm_that_writes_the_time_names_the_file_that_differs(work: Path) -> None:
    receipt = first_run(work, "clock.sh", "a.csv")
    again = reproduce(work, receipt, "clock.sh", "a.csv")
    assert again.returncode == 1, again.stdout + again.stderr
    assert again.stdout.splitlines()[-1] == "not reproduced: 1 of 2 outputs differ: now.txt"
    assert (work / "again" / "copy.txt").read_text() == "a,b\n1,2\n"


def test_a_changed_input_is_refused_naming_it_before_anything_runs(work: Path) -> None:
    receipt = first_run(work, "det.sh", "a.csv", "b.csv")
    (work / "b2.csv").write_text("c,d\n3,4\n5,7\n")
    changed = reproduce(work, receipt, "det.sh", "a.csv", "b2.csv")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert changed.stdout == ""  # no phase: nothing ran
    assert changed.stderr.strip().splitlines() == [
        "localcompute run: --input b2.csv is not the receipt's input 1 (inputs/1/0): "
        "its sha256 differs"
    ]
    fewer = reproduce(work, receipt, "det.sh", "a.csv")
    assert fewer.returncode == 1 and fewer.stdout == ""
    assert "the receipt has 2 input files, 1 given with --input" in fewer.stderr
    (work / "other.sh").write_text(DETERMINISTIC + "echo more > $OUTPUTS/more.txt\n")
    algorithm = reproduce(work, receipt, "other.sh", "a.csv", "b.csv")
    assert algorithm.returncode == 1 and algorithm.stdout == ""
    assert "other.sh is not the receipt's algorithm: its sha256 differs" in algorithm.stderr
    (work / "bad.json").write_text("{}")
    bad = reproduce(work, work / "bad.json", "det.sh", "a.csv", "b.csv")
    assert bad.returncode == 1 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "receipt " in bad.stderr
    assert not (work / "again").exists()
