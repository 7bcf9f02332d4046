"""A configuration file read into Settings: TOML parsed, its paths anchored to its folder,
validated with errors that name the file and the key."""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from localcompute.core.errors import ConfigError
from localcompute.core.settings import CONFIG_ENV_VAR, Settings

log = logging.getLogger(__name__)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "(top level)"


def parse_settings(data: dict[str, object], source: str) -> Settings:
    """Validate a parsed TOML document; errors name `source` and the key path."""
    try:
        data, moved = _moved_keys(data)
        settings = Settings.model_validate(data)
    except ValidationError as e:
        lines = [f"{source}: {_key_path(err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from e
    except ValueError as e:  # a key given both where it was and where it is now
        raise ConfigError(f"invalid configuration:\n  {source}: {e}") from e
    for line in moved:
        log.warning("%s: %s", source, line)
    return settings


# Keys that were in [docker] and are not Docker's: where each is now. A file that still has
# them there is read as before, and the server says where they belong (deprecations).
_MOVED_KEYS = {
    "download_connect_timeout": ("downloads", "connect_timeout"),
    "download_idle_timeout": ("downloads", "idle_timeout"),
    "reconcile_interval": ("server", "reconcile_interval"),
}


def _moved_keys(data: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """The document with each moved key in its new place, and a line for each one moved."""
    docker = data.get("docker")
    if not isinstance(docker, dict) or not set(docker) & set(_MOVED_KEYS):
        return data, []
    data, docker, said = dict(data), dict(docker), []
    for key in [k for k in docker if k in _MOVED_KEYS]:
        section, name = _MOVED_KEYS[key]
        held = data.get(section)
        moved = dict(held) if isinstance(held, dict) else {}
        if name in moved:
            raise ValueError(f"[docker] {key} and [{section}] {name} are both set: keep one")
        moved[name] = docker.pop(key)
        data[section] = moved
        said.append(f"[docker] {key} is now [{section}] {name}; it is read from both")
    data["docker"] = docker
    return data, said


# Where a configuration file holds paths: (table or array of tables, key).
_PATH_KEYS = (
    ("server", "data_dir"),
    ("provider", "private_key_file"),
    ("provider", "dataset_roots"),
    ("datasets", "files"),
    ("datasets", "ddo"),
    ("algorithms", "file"),
)


def anchor_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Every path in a configuration, made absolute against `folder` (and ~ expanded), in
    place: a server started from / must not write /var/localcompute.sqlite. A file's
    paths are relative to its folder; the pytest plugin's, to the project's."""

    def at(value: Any) -> Any:
        if not isinstance(value, str) or not value or value.startswith(("http://", "https://")):
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else folder / path)

    for section, key in _PATH_KEYS:
        holder = data.get(section)
        for entry in holder if isinstance(holder, list) else [holder]:
            if isinstance(entry, dict) and key in entry:
                value = entry[key]
                entry[key] = [at(v) for v in value] if isinstance(value, list) else at(value)
    return data


def load_settings(path: Path | None = None) -> Settings:
    """Settings from `path`, else $LOCALCOMPUTE_CONFIG, else the built-in defaults.

    Paths in the file are relative to the file's folder."""
    if path is None and os.environ.get(CONFIG_ENV_VAR):
        path = Path(os.environ[CONFIG_ENV_VAR])
    if path is None:
        return Settings()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such configuration file") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return parse_settings(anchor_paths(data, path.resolve().parent), str(path))
