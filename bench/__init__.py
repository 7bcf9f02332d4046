"""Benchmarks: each file is a script; see its docstring."""


def verdict(met: bool) -> str:
    """How a bench line ends: whether its goal was reached in this run."""
    return "goal met" if met else "goal NOT met"
