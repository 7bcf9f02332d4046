"""The test layers as the commands run them: `scripts/run test` with no path (what CI runs)
collects every layer, the fuzz layer included; `test-fast` and `test-fuzz` run theirs.
Nothing in the configuration deselects a layer, so none can drop out unnoticed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Each layer's folder under tests/, and the verb of scripts/run (and make target) that runs
# it alone; `scripts/run test` runs them all.
LAYERS = {
    "unit": "test-fast",
    "integration": "test-fast",
    "fuzz": "test-fuzz",
    "commands": "test",
    "docker": "test",
    "clients": "test",
    "swarm": "test",
    "ui": "test-ui",
}
DESELECTING = ("-m", "-k", "--ignore", "--ignore-glob", "--deselect", "--co", "--collect-only")


def test_every_folder_of_tests_is_a_layer() -> None:
    folders = {p.parent.name for p in (REPO / "tests").glob("*/test_*.py")}
    assert folders == set(LAYERS), "a new folder of tests needs a layer (LAYERS, scripts/run)"


def test_ci_collects_every_layer_and_nothing_deselects_one() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    ini = pyproject["tool"]["pytest"]["ini_options"]
    assert ini["testpaths"] == ["tests"]
    assert "norecursedirs" not in ini and "python_files" not in ini
    assert not [o for o in ini.get("addopts", []) if o.split("=")[0] in DESELECTING]
    ci = re.search(r"^exec scripts/run test\b(.*)$", (REPO / ".ci" / "run").read_text(), re.M)
    assert ci, "CI runs scripts/run test"
    args = ci.group(1).split()
    assert not [a for a in args if "/" in a or a.split("=")[0] in DESELECTING], "no path, no -m"


def test_each_layer_has_its_command() -> None:
    script = (REPO / "scripts" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    for verb in set(LAYERS.values()) - {"test"}:
        body = re.search(rf"^{verb}\)\n(.*?)\n    ;;", script, re.M | re.S)
        assert body, f"scripts/run has no {verb}"
        named = set(re.findall(r"tests/(\w+)", body.group(1)))
        assert named == {layer for layer, v in LAYERS.items() if v == verb}
        assert f"{verb}:\n\tscripts/run {verb}\n" in makefile
