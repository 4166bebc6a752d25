"""Which app settings the app's code reads, found in its source rather than copied from it.

A read is `env.get(X)`, `env[X]` (the settings mapping, named `env` or `environ`) or
`os.environ.get(X)`, `os.environ[X]`, `os.getenv(X)`. X is resolved statically: a string, an f-string
of resolvable parts, a module constant (a tuple of strings), a loop or comprehension variable over
resolvable items, or a function parameter (through the function's call sites in the module).
Anything else is an error naming the line, so a new way of reading a setting cannot slip past.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Iterable

MAPPING_NAMES = {"env", "environ"}


class UnresolvedSetting(Exception):
    pass


def settings_read(paths: Iterable[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        names |= settings_read_in_source(path.read_text(), str(path))
    return names


def settings_read_in_source(source: str, filename: str = "<source>") -> set[str]:
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    resolver = _Resolver(tree, parents, filename)
    names: set[str] = set()
    for node in ast.walk(tree):
        key = _setting_key(node)
        if key is not None:
            names |= resolver.values(key)
    return names


def _setting_key(node: ast.AST) -> ast.expr | None:
    """The key expression if this node reads a setting, else None."""
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "get" and _is_settings_mapping(func.value):
            return node.args[0]
        if isinstance(func, ast.Attribute) and func.attr == "getenv" and _is_name(func.value, "os"):
            return node.args[0]
    if isinstance(node, ast.Subscript) and _is_settings_mapping(node.value) and isinstance(node.ctx, ast.Load):
        return node.slice
    return None


def _is_settings_mapping(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in MAPPING_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_name(node.value, "os")


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


class _Resolver:
    def __init__(self, tree: ast.Module, parents: dict[ast.AST, ast.AST], filename: str) -> None:
        self._tree = tree
        self._parents = parents
        self._filename = filename

    def values(self, node: ast.expr) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(self.values(element) for element in node.elts))
        if isinstance(node, ast.JoinedStr):
            parts = [self.values(part.value if isinstance(part, ast.FormattedValue) else part) for part in node.values]
            return {"".join(combination) for combination in itertools.product(*parts)}
        if isinstance(node, ast.Name):
            return self._name_values(node)
        raise self._unresolved(node)

    def _name_values(self, name: ast.Name) -> set[str]:
        node: ast.AST = name
        while node in self._parents:
            node = self._parents[node]
            if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                for generator in node.generators:
                    if _is_name(generator.target, name.id):
                        return self.values(generator.iter)
            if isinstance(node, ast.For) and _is_name(node.target, name.id):
                return self.values(node.iter)
            for statement in getattr(node, "body", None) or ():  # a local name bound in an enclosing block
                if isinstance(statement, ast.Assign) and any(_is_name(target, name.id) for target in statement.targets):
                    return self.values(statement.value)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                parameter_names = [argument.arg for argument in node.args.args]
                if name.id in parameter_names:
                    return self._argument_values(node.name, parameter_names.index(name.id), name.id)
        for statement in self._tree.body:
            if isinstance(statement, ast.Assign) and any(_is_name(target, name.id) for target in statement.targets):
                return self.values(statement.value)
        raise self._unresolved(name)

    def _argument_values(self, function: str, position: int, keyword: str) -> set[str]:
        values: set[str] = set()
        calls = [node for node in ast.walk(self._tree) if isinstance(node, ast.Call) and _is_name(node.func, function)]
        for call in calls:
            given = [kw.value for kw in call.keywords if kw.arg == keyword]
            argument = call.args[position] if position < len(call.args) else (given[0] if given else None)
            if argument is None:
                raise self._unresolved(call)
            values |= self.values(argument)
        return values

    def _unresolved(self, node: ast.AST) -> UnresolvedSetting:
        return UnresolvedSetting(
            f"{self._filename}:{getattr(node, 'lineno', '?')}: cannot tell statically which app setting "
            f"`{ast.unparse(node)}` names; read it with a name the check can resolve, or extend the check"
        )
