"""The pytest plugin's configurations: TOML text or dicts, their relative paths made
absolute, merged, and written as the TOML file a server reads."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

Config = dict[str, Any] | str


def session_config(
    ini: str, inipath: Path | None, rootpath: Path, fixture: Config
) -> dict[str, Any]:
    """The ini option's configuration (`ini`, read from `inipath`) with the fixture's over
    it. Relative paths: the ini option's against the ini file's folder, the fixture's
    against the rootdir, so that the same text names the same file in either place."""
    ini_source = f"the localcompute_config ini option ({inipath or 'no ini file'})"
    base = anchored(as_dict(ini, ini_source), inipath.parent if inipath else rootpath)
    extra = anchored(as_dict(fixture, "the localcompute_config fixture"), rootpath)
    return merge(base, extra)


def as_dict(config: Config, source: str) -> dict[str, Any]:
    """A configuration as a dict of its own (the caller's is never changed)."""
    if not isinstance(config, str):
        plain: dict[str, Any] = _plain(dict(config))
        return plain
    try:
        return tomllib.loads(config)
    except tomllib.TOMLDecodeError as e:
        pytest.fail(f"{source} is not valid TOML: {e}", pytrace=False)


def _plain(value: Any) -> Any:
    """A copy of `value` with Path values as strings, so relative ones are anchored too."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def anchored(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`config` with its relative paths made absolute against `folder`."""
    from localcompute.core.config_file import anchor_paths

    return anchor_paths(config, folder)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def to_toml(data: dict[str, Any]) -> str:
    """The configuration as TOML: tables, arrays of tables, and plain values."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict | list) or (
            isinstance(value, list) and not all(isinstance(v, dict) for v in value)
        ):
            lines.append(f"{key} = {_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines += ["", f"[[{key}]]"] + [f"{k} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
