"""Route templates and method dispatch, following ASP.NET Core routing as the host does."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")


def _is_int32(value: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", value)) and -(2**31) <= int(value) < 2**31


# Constraints we honour; others (min(1), regex(...), ...) are parsed and ignored.
CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": _is_int32,
    "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
}


@dataclass(frozen=True)
class Segment:
    literal: str | None = None  # set for literal segments, casefolded
    name: str = ""
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: tuple[Callable[[str], bool], ...] = ()

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


def _parse_segment(text: str, template: str) -> Segment:
    if not (text.startswith("{") and text.endswith("}")):
        if "{" in text or "}" in text:
            raise ValueError(f"unsupported route segment {text!r} in {template!r}")
        return Segment(literal=text.casefold())
    body = text[1:-1]
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    body, _, default = body.partition("=")
    # Constraints follow ':'; split on ':' outside parentheses (regex(...) may contain ':').
    name, *constraints = re.split(r":(?![^(]*\))", body)
    optional = name.endswith("?")
    name = name.rstrip("?")
    if not re.fullmatch(r"\w+", name):
        raise ValueError(f"bad parameter {text!r} in route {template!r}")
    checks = tuple(CONSTRAINTS[c.rstrip("?")] for c in constraints if c.rstrip("?") in CONSTRAINTS)
    optional = optional or any(c.endswith("?") for c in constraints) or bool(default)
    return Segment(name=name, optional=optional or catch_all, catch_all=catch_all, default=default or None, checks=checks)


def split_path(path: str) -> list[str]:
    """Raw (still %-encoded) path segments; empty segments are dropped."""
    return [s for s in path.split("/") if s]


class RouteTemplate:
    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.segments = [_parse_segment(s, template) for s in split_path(self.template)]
        self.literals = sum(s.literal is not None for s in self.segments)
        # Tie-break per segment, left to right: literal > constrained > plain > optional > catch-all.
        self.rank = tuple(
            4 if s.literal is not None else 0 if s.catch_all else 1 if s.optional else 3 if s.checks else 2 for s in self.segments
        )

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """Route values for raw path segments ``parts``, or None if they do not match."""
        values: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if seg.catch_all:
                rest = unquote("/".join(parts[i:]))
                if rest:
                    values[seg.name] = rest
                return values if not rest or seg.accepts(rest) else None
            if i >= len(parts):
                if not seg.optional:
                    return None
                if seg.default is not None:
                    values[seg.name] = seg.default
                continue
            value = unquote(parts[i])
            if seg.literal is not None:
                if value.casefold() != seg.literal:
                    return None
            elif seg.accepts(value):
                values[seg.name] = value
            else:
                return None
        return values if len(parts) <= len(self.segments) else None


class RouteNotFound(LookupError):
    """No function takes this method on this path: the host answers 404, even when another method would do."""


@dataclass
class RouteMatch(Generic[T]):
    target: T
    params: dict[str, str]


@dataclass
class Router(Generic[T]):
    prefix: str = "api"
    _routes: list[tuple[RouteTemplate, frozenset[str] | None, T]] = field(default_factory=list)

    def add(self, template: str, methods: Iterable[str] | None, target: T) -> None:
        """Register ``target``; ``methods=None`` means every method."""
        allowed = None if methods is None else frozenset(m.upper() for m in methods)
        self._routes.append((RouteTemplate(template), allowed, target))
        # Most specific first (stable sort keeps registration order among equals).
        self._routes.sort(key=lambda r: (r[0].literals, r[0].rank), reverse=True)

    def resolve(self, method: str, path: str) -> RouteMatch[T]:
        """Find the function for ``method`` and the raw URL ``path`` (prefix included)."""
        parts = split_path(path)
        prefix = [p.casefold() for p in split_path(self.prefix)]
        if [unquote(p).casefold() for p in parts[: len(prefix)]] != prefix:
            raise RouteNotFound(path)
        parts = parts[len(prefix) :]
        for template, methods, target in self._routes:
            params = template.match(parts)
            if params is not None and (methods is None or method.upper() in methods):
                return RouteMatch(target, params)
        raise RouteNotFound(path)
