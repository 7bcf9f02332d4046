"""The pytest plugin in another project's session (pytester): a relative path in its ini
option is the project's, and when the server does not start, the failure's first line is
the server's own reason. No Docker needed: this server stops before it asks for it."""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ["pytester"]

# localcompute, imported already, cannot be rewritten for the project's session (pytest
# warns); the plugins pyproject.toml keeps out of this suite stay out of it too.
QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

PROJECT = '''
[tool.pytest.ini_options]
asyncio_default_fixture_loop_scope = "function"
localcompute_config = """
[provider]
dataset_roots = ["data"]
[[datasets]]
did = "did:op:sales"
files = ["data/sales.csv"]
"""
'''

TESTS = """
def test_the_sales(localcompute_server):
    pass
"""


def test_a_relative_path_is_the_projects_and_the_failure_names_the_real_cause(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> None:
    # The project's test module is written to a temp folder once: its bytecode is not kept
    # (where scripts/run caches bytecode under .venv it would pile up there, a run each).
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    pytester.makepyprojecttoml(PROJECT)
    pytester.makepyfile(test_demo=TESTS)
    (pytester.path / "data").mkdir()  # its sales.csv is missing

    result = pytester.runpytest(*pytestconfig.getini("addopts"), *QUIET)

    result.assert_outcomes(errors=1)
    lines = result.outlines
    header = next(i for i, line in enumerate(lines) if "ERROR at setup of test_the_sales" in line)
    assert lines[header + 1] == (
        "localcompute did not start: datasets[0] (did:op:sales): local file "
        f"{pytester.path}/data/sales.csv does not exist"
    )
