"""Imports as on Azure: the app gets what requirements.txt deploys, not whatever the local venv holds.

A deployment installs requirements.txt and what it depends on; packages that only development
needs (requirements-dev.txt) are absent there. devhost refuses them here too, so an import that
would fail on Azure fails locally first.
"""
from __future__ import annotations

import importlib.machinery
import os
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Iterator, Optional, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def _requirement_lines(path: Path) -> Iterator[str]:
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            yield from _requirement_lines(path.parent / line.split(None, 1)[1])
        elif line and not line.startswith(("#", "-")):  # other pip options select no package
            yield line


def deployed_distributions(requirements: Path) -> list[metadata.Distribution]:
    """The installed distributions that a deployment of ``requirements`` would hold (dependencies too)."""
    found: dict[str, metadata.Distribution] = {}
    pending: list[tuple[Requirement, frozenset[str]]] = []
    for line in _requirement_lines(requirements) if requirements.is_file() else ():
        try:
            pending.append((Requirement(line), frozenset({""})))
        except InvalidRequirement:
            continue  # a URL or path requirement: pip resolves it; devhost cannot tell its name
    while pending:
        requirement, parent_extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found or not (requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in parent_extras)):
            continue
        try:
            found[name] = distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here, so nothing of it can be imported by mistake either
        extras = frozenset({"", *requirement.extras})
        pending += [(Requirement(dependency), extras) for dependency in distribution.requires or ()]
    return list(found.values())


class DeployedPackagesOnly:
    """A meta path finder that refuses modules of installed packages a deployment would not hold."""

    def __init__(self, requirements: Path) -> None:
        self.requirements_name = requirements.name
        paths = sysconfig.get_paths()
        self.site_dirs = tuple(os.path.join(os.path.abspath(paths[key]), "") for key in ("purelib", "platlib"))
        self.deployed = {os.path.abspath(distribution.locate_file(file))
                         for distribution in deployed_distributions(requirements)
                         for file in distribution.files or ()}

    def refuses(self, origin: Optional[str]) -> bool:
        if not origin:
            return False  # built-in, frozen, or a namespace package (it holds nothing by itself)
        origin = os.path.abspath(origin)
        return origin.startswith(self.site_dirs) and origin not in self.deployed

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: object = None) -> None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and self.refuses(spec.origin):
            raise ModuleNotFoundError(
                f"No module named '{fullname}' (installed here, but not deployed by {self.requirements_name})",
                name=fullname)
        return None  # the usual finders import what is allowed

    def install(self) -> None:
        """Refuse from now on, also modules that devhost itself imported before (they are imported anew)."""
        for name, module in list(sys.modules.items()):
            if self.refuses(getattr(module, "__file__", None)):
                del sys.modules[name]
        sys.meta_path.insert(0, self)
