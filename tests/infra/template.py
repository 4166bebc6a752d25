"""The Bicep template as data: every file under infra/ parsed once with pycep, and small lookups."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@functools.cache
def parsed() -> dict[str, dict[str, Any]]:
    """Each .bicep file's parse, by file name; parsing fails loudly on syntax pycep cannot read."""
    parser = BicepParser()
    return {path.name: parser.parse(file_path=path) for path in sorted(INFRA.glob("**/*.bicep"))}


def resources(resource_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(file, symbol, resource) for every declared or existing resource of that type, in every file."""
    for file, template in parsed().items():
        for symbol, resource in template.get("resources", {}).items():
            if resource["type"] == resource_type:
                yield file, symbol, resource


def the_resource(resource_type: str) -> tuple[str, str, dict[str, Any]]:
    """The one resource of that type that the template creates (not an `existing` reference)."""
    found = [r for r in resources(resource_type) if not r[2]["existing"]]
    assert len(found) == 1, f"expected one {resource_type}, found {[symbol for _, symbol, _ in found]}"
    return found[0]


def config(resource_type: str) -> dict[str, Any]:
    return the_resource(resource_type)[2]["config"]


def parameters(file: str) -> dict[str, Any]:
    return parsed()[file].get("parameters", {})


def references(expression: Any, file: str) -> str | None:
    """The parameter, variable or resource an expression names, if it is a bare symbol of that file.

    pycep renders a symbol and a string literal alike, so a value counts as a reference only when
    the file declares a symbol of that name.
    """
    template = parsed()[file]
    symbols = {name for section in ("parameters", "variables", "resources", "modules") for name in template.get(section, {})}
    return expression if isinstance(expression, str) and expression in symbols else None


def property_path(expression: Any) -> list[str]:
    """`a.b.c` as ["a", "b", "c"]; [] for anything but a chain of property accesses."""
    if isinstance(expression, str):
        return [expression]
    operator = expression.get("operator", {}) if isinstance(expression, dict) else {}
    if operator.get("type") != "property_accessor":
        return []
    head, rest = operator["operands"]["operand_1"], property_path(operator["operands"]["operand_2"])
    return [head, *rest] if isinstance(head, str) and rest else []


def app_settings() -> dict[str, Any]:
    """The function app's app settings, name to value expression."""
    site = config("Microsoft.Web/sites")
    settings = site["properties"]["siteConfig"]["appSettings"]
    names = [setting["name"] for setting in settings]
    assert len(names) == len(set(names)), f"app settings named twice: {sorted({n for n in names if names.count(n) > 1})}"
    return {setting["name"]: setting["value"] for setting in settings}
