"""The dependency rule: adapters -> streams -> projections -> domain, never back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["domain", "projections", "streams", "adapters"]  # each may import those before it


def _imports(path: Path) -> set[str]:
    """The contactstream layers a module imports (absolute or relative)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: ..adapters.x -> adapters
                if node.level >= 2 and node.module:
                    found.add(node.module.split(".")[0])
                elif node.level == 1:
                    found.add(path.parent.name)
            elif node.module and node.module.startswith("contactstream."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("contactstream.")}
    return found & set(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = {f"{p.relative_to(ROOT)} imports {bad}"
             for p in sorted((ROOT / layer).rglob("*.py"))
             for bad in _imports(p) - allowed}
    assert not wrong, sorted(wrong)


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    module = tmp_path / "streams" / "x.py"
    module.parent.mkdir()
    module.write_text("from ..adapters import kafka\nfrom .ports import A\n")
    assert _imports(module) == {"adapters", "streams"}
