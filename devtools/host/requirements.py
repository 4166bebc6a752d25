"""Imports as on Azure: the app gets what its deployment holds, not whatever the local folder holds.

A deployment installs requirements.txt and what it depends on; packages that only development
needs (requirements-dev.txt) are absent there. It also leaves out the app's own files that
.funcignore names (tests, local tools). devhost refuses both here too, so an import that would fail
on Azure fails locally first.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pathspec import GitIgnoreSpec


def _requirement_lines(path: Path) -> Iterator[str]:
    # As pip reads them: a trailing backslash continues the line (a lock's "name==1.0 \" then its
    # "--hash=..." lines), and options after a requirement (--hash) do not change which package it is.
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            yield from _requirement_lines(path.parent / line.split(None, 1)[1])
        elif line and not line.startswith(("#", "-")):  # other pip options select no package
            yield line.split(" --", 1)[0]


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
        if name in found or not (
            requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in parent_extras)
        ):
            continue
        try:
            found[name] = distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here, so nothing of it can be imported by mistake either
        extras = frozenset({"", *requirement.extras})
        pending += [(Requirement(dependency), extras) for dependency in distribution.requires or ()]
    return list(found.values())


class DeployedOnly:
    """A meta path finder that refuses modules a deployment of the app in ``app_dir`` would not hold:
    installed packages that requirements.txt does not deploy, and app files that .funcignore leaves out."""

    def __init__(self, app_dir: Path) -> None:
        requirements = app_dir / "requirements.txt"
        self.requirements_name = requirements.name
        paths = sysconfig.get_paths()
        self.site_dirs = tuple(os.path.join(os.path.abspath(paths[key]), "") for key in ("purelib", "platlib"))
        self.deployed = {
            os.path.abspath(distribution.locate_file(file))
            for distribution in deployed_distributions(requirements)
            for file in distribution.files or ()
        }
        self.app_dir = os.path.join(os.path.abspath(app_dir), "")
        funcignore = app_dir / ".funcignore"
        self.left_out = GitIgnoreSpec.from_lines(funcignore.read_text(encoding="utf-8").splitlines() if funcignore.is_file() else [])

    def refusal(self, origin: str | None) -> str | None:
        """Why a deployment would not hold the module loaded from ``origin``; None if it would."""
        if not origin:
            return None  # built-in, frozen, or a namespace package (it holds nothing by itself)
        origin = os.path.abspath(origin)
        if origin.startswith(self.site_dirs):  # a virtual environment inside the app's folder is no app file
            return None if origin in self.deployed else f"installed here, but not deployed by {self.requirements_name}"
        if origin.startswith(self.app_dir) and self.left_out.match_file(origin.removeprefix(self.app_dir)):
            return "in the app's folder here, but left out of the deployment by .funcignore"
        return None

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: object = None) -> None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        reason = self.refusal(spec.origin) if spec is not None else None
        if reason:
            raise ModuleNotFoundError(f"No module named '{fullname}' ({reason})", name=fullname)
        return None  # the usual finders import what is allowed

    def install(self) -> None:
        """Refuse from now on, also modules imported before (they are imported anew), but devhost's own."""
        own = __package__ or ""
        for name, module in list(sys.modules.items()):
            if name == "__main__" or name == own or own.startswith(name + ".") or name.startswith(own + "."):
                continue  # devhost itself, and the packages it sits in
            if self.refusal(getattr(module, "__file__", None)):
                del sys.modules[name]
        sys.meta_path.insert(0, self)
