"""The Bicep template as data: every file under infra/ parsed once with pycep, and small lookups."""

from __future__ import annotations

import functools
import json
import re
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


# ARM functions these tests evaluate, by pycep's name for them; their arguments in pycep's order.
FUNCTIONS = {
    "concat": lambda *arrays: [item for array in arrays for item in array],
    "union": lambda *arrays: list(dict.fromkeys(item for array in arrays for item in array)),
    "empty": lambda value: not value,
    "length": len,
    "ends_with": lambda text, suffix: text.endswith(suffix),
    "substring": lambda text, start, length: text[start : start + length],
    "to_lower": str.lower,
    "join": lambda items, delimiter: delimiter.join(items),
    "objectKeys": lambda value: list(value),
    # ARM's string() of an object or array is its compact JSON.
    "string": lambda value: value if isinstance(value, str) else json.dumps(value, separators=(",", ":")),
}
OPERATORS = {
    "add": lambda left, right: left + right,
    "substract": lambda left, right: left - right,
    "equals": lambda left, right: left == right,
}


def evaluate(expression: Any, file: str, values: dict[str, Any]) -> Any:
    """The value of one of the file's expressions at deployment, given the values of its parameters.

    `values` also stands in for the deployment functions without arguments, as "environment()" or
    "tenant()". The file's variables are evaluated as they are named. Only the functions and operators
    above are known: anything else raises, so a test never passes on a construct it did not evaluate.
    """
    variables = parsed()[file].get("variables", {})

    def value(node: Any, scope: dict[str, Any]) -> Any:
        if isinstance(node, str):
            if node in scope:
                return scope[node]
            if node in variables:
                return value(variables[node]["value"], values)
            # A string literal; pycep keeps its interpolations as text.
            return re.sub(r"\$\{(\w+)\}", lambda match: str(value(match.group(1), scope)), node)
        if node is None or isinstance(node, (bool, int)):
            return node
        if isinstance(node, list):
            return [value(item, scope) for item in node]
        if "loop_type" in node:
            loop = node["loop_type"]
            assert loop["type"] in ("array", "array_index") and node["condition"] is None, f"loop not evaluated: {loop}"
            detail = loop["detail"]
            index_names = [detail["index_name"]] if loop["type"] == "array_index" else []
            return [
                value(node["config"], {**scope, detail["item_name"]: item, **dict.fromkeys(index_names, index)})
                for index, item in enumerate(value(detail["array_name"], scope))
            ]
        if "function" in node:
            function = node["function"]
            arguments = list(function.get("parameters", {}).values())
            if not arguments:
                return values[f"{function['type']}()"]
            if function["type"] == "map":
                items, (_, lambda_) = value(arguments[0], scope), arguments
                assert lambda_["type"] == "lambda_expression", f"map without a lambda: {lambda_}"
                variable, body = lambda_["detail"]["var_1"], lambda_["detail"]["expression"]
                return [value(body, {**scope, variable: item}) for item in items]
            assert function["type"] in FUNCTIONS, f"function not evaluated: {function['type']}"
            return FUNCTIONS[function["type"]](*(value(argument, scope) for argument in arguments))
        if "operator" in node:
            operator = node["operator"]
            operands = operator["operands"]
            if operator["type"] == "conditional":
                chosen = "true_value" if value(operands["condition"], scope) else "false_value"
                return value(operands[chosen], scope)
            if operator["type"] == "property_accessor":
                return _property(value(operands["operand_1"], scope), operands["operand_2"])
            if operator["type"] == "index_accessor":
                return value(operands["operand_1"], scope)[value(operands["operand_2"], scope)]
            assert operator["type"] in OPERATORS, f"operator not evaluated: {operator['type']}"
            return OPERATORS[operator["type"]](value(operands["operand_1"], scope), value(operands["operand_2"], scope))
        return {key: value(item, scope) for key, item in node.items()}

    return value(expression, values)


def _property(base: Any, path: Any) -> Any:
    """base.a.b, with pycep's path `a.b` nested as an accessor of `a` and `b` (`a` may be indexed: `a[0]`)."""
    if isinstance(path, str):
        return base[path]
    operator = path["operator"]
    operands = operator["operands"]
    if operator["type"] == "index_accessor":  # a.b[0], with a literal index
        return _property(base, operands["operand_1"])[operands["operand_2"]]
    return _property(_property(base, operands["operand_1"]), operands["operand_2"])
