"""The build step pyproject.toml cannot express: the wheel carries config.example.toml,
and the worked example's dataset and algorithm that the file serves.

The file stays at the repository's root, where `scripts/run serve` and people read it;
this copies it into the built package, where `localcompute config example` finds it.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EXAMPLE = "config.example.toml"
# The same list as localcompute/cli/config.py's EXAMPLE_FILES (a test checks the wheel).
EXAMPLE_FILES = ("examples/data/sales.csv", "examples/algorithms/sales_by_region.py")


class BuildPyWithExample(build_py):
    def run(self) -> None:
        super().run()
        # An editable install builds into a scratch folder that is thrown away: it reads
        # the root file instead (localcompute/cli/config.py), so nothing is lost here.
        package = Path(self.build_lib) / "localcompute"
        for name in (EXAMPLE, *EXAMPLE_FILES):
            target = package / name
            self.mkpath(str(target.parent))
            self.copy_file(name, str(target))


setup(cmdclass={"build_py": BuildPyWithExample})
