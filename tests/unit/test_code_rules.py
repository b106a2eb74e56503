"""A rule of the code base that ruff and mypy do not check: no side effect hidden in an
expression (``fut.done() or fut.set_result(x)``, a list comprehension run for its effect,
a tuple of calls); an effect is a statement of its own (``if not fut.done():``, a ``for``
loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("adapters", "domain", "projections", "streams", "benchmarks", "tests")
# a statement made of one of these is a call for its value's sake or its effect, as it says
PLAIN = (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.Constant)
# builtins whose result is the point: called as a statement, they run for their arguments'
# effect (``any(seen.add(x) for x in xs)``, ``list(map(send, xs))``)
FOR_THEIR_RESULT = {"all", "any", "dict", "filter", "list", "map", "max", "min", "next", "set",
                    "sorted", "sum", "tuple"}
# methods that change something: in a lambda's ``or``, ``and``, conditional or tuple, they
# are an effect hidden in an expression (``lambda: fut.done() or fut.set_result(None)``)
CHANGES = {"add", "append", "cancel", "clear", "close", "commit", "discard", "execute",
           "extend", "insert", "pop", "put", "put_nowait", "remove", "send", "set",
           "set_exception", "set_result", "setdefault", "update", "write"}


def _calls(node: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call)]


def hidden_effects(source: str) -> list[tuple[int, str]]:
    """(line, code) of every side effect hidden in an expression of ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr):
            value = node.value
            if not isinstance(value, PLAIN) and _calls(value):
                found.append((node.lineno, ast.unparse(node)))
            elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and \
                    value.func.id in FOR_THEIR_RESULT:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Lambda) and isinstance(
                node.body, ast.BoolOp | ast.IfExp | ast.Tuple | ast.List) and any(
                isinstance(c.func, ast.Attribute) and c.func.attr in CHANGES
                for c in _calls(node.body)):
            found.append((node.lineno, ast.unparse(node)))
    return found


@pytest.mark.parametrize("code", [
    "fut.done() or fut.set_result(False)",
    "ok and log.info('x')",
    "[queue.put(x) for x in xs]",
    "{seen.add(x) for x in xs}",
    "svc.pop('from'), svc.pop('to')",
    "f() if ready else g()",
    "any(seen.add(x) for x in xs)",
    "list(map(send, xs))",
    "loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))",
    "callbacks.append(lambda: (a.append(1), b.close()))",
])
def test_the_rule_finds_an_effect_hidden_in_an_expression(code: str) -> None:
    assert hidden_effects(code), code


@pytest.mark.parametrize("code", [
    "if not fut.done():\n    fut.set_result(False)",
    "x = a or b()",
    "send(x)",
    "await task",
    "ys = [f(x) for x in xs]",
    '"""A docstring."""',
    "rows.sort(key=lambda r: (len(r), r))",
    "lookup = lambda: store.resolve(asked) or asked",
])
def test_the_rule_leaves_plain_statements_alone(code: str) -> None:
    assert hidden_effects(code) == [], code


def test_no_side_effect_is_hidden_in_an_expression() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {code}"
             for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
             for line, code in hidden_effects(path.read_text(encoding="utf-8"))]
    assert found == [], "write these effects as statements:\n" + "\n".join(found)
