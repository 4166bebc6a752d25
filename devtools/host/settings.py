"""local.settings.json, host.json and app-setting references, as ``func start`` reads them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any


class SettingsError(Exception):
    """A settings file or app-setting reference that cannot be used."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: files saved by Windows editors often start with a BOM.
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    return data


def _as_setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def load_local_settings(path: Path, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Copy ``Values`` into ``environ`` for names not already set (real env vars win).

    Returns the settings that were applied. A missing file is not an error.
    """
    if not path.is_file():
        return {}
    data = _read_json(path)
    if data.get("IsEncrypted"):
        raise SettingsError(f"{path} is encrypted; decrypt it first (func settings decrypt)")
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    applied = {name: _as_setting(value) for name, value in values.items() if name not in environ}
    environ.update(applied)
    return applied


def read_route_prefix(app_dir: Path) -> str:
    """``extensions.http.routePrefix`` from host.json; ``api`` by default, ``""`` = none."""
    path = app_dir / "host.json"
    if not path.is_file():
        return "api"
    http = (_read_json(path).get("extensions") or {}).get("http") or {}
    prefix = http.get("routePrefix", "api")
    return (prefix if isinstance(prefix, str) else "api").strip("/")


def resolve_references(value: str, environ: Mapping[str, str] = os.environ) -> str:
    """Replace ``%NAME%`` with the app setting NAME, as the host does for binding properties."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SettingsError(f"app setting {name!r} referenced by {value!r} is not set")
        return environ[name]

    return re.sub(r"%([^%\s]+)%", lookup, value)
