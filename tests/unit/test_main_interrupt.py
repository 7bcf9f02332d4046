"""A Ctrl-C while the command's modules load ends it with 130 and one line, whatever the
library it lands in does with a KeyboardInterrupt."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import signal
import sys
import types
from collections.abc import Sequence

import pytest

import localcompute
import localcompute.__main__ as entry
import localcompute.cli  # the real one, for the test to put back where it was


class _SwallowingCli(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """localcompute.cli as a module whose loading is interrupted inside code that
    swallows whatever it raises (as pydantic-core turns a KeyboardInterrupt while it
    builds a validator into a SchemaError), then offers a command that "runs"."""

    ran = False

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "localcompute.cli":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):  # the handler runs between two of these bytecodes
                pass
        except BaseException:  # a library's handling of an error while it loads
            pass

        def main() -> int:
            _SwallowingCli.ran = True
            return 0

        module.main = main  # type: ignore[attr-defined]


def test_a_ctrl_c_while_the_cli_loads_ends_the_command_with_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    finder = _SwallowingCli()
    # The real CLI comes back after: in sys.modules and as the package's attribute.
    monkeypatch.delitem(sys.modules, "localcompute.cli", raising=False)
    monkeypatch.setattr(localcompute, "cli", localcompute.cli)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    monkeypatch.setattr(entry, "leave", lambda code: code)  # not the test's process exit
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = entry.main()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (code, finder.ran) == (entry.EXIT_INTERRUPTED, False)
    assert capsys.readouterr().err == "localcompute: interrupted\n"
