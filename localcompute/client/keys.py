"""The consumer's key on this machine: made on first use in the user's config dir."""

from __future__ import annotations

import os
from pathlib import Path

from localcompute.core.errors import ConfigError
from localcompute.core.signing import Key


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "localcompute"


def load_key(key_file: Path | None = None) -> Key:
    """The key in `key_file`, else in ~/.config/localcompute/consumer.key, made once (0600)."""
    if key_file is not None:
        try:
            text = key_file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the key file {key_file}: {e}") from e
        return Key.from_hex(text, str(key_file))
    return Key.made_once(config_dir() / "consumer.key", "the consumer key")
