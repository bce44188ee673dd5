"""research/ stays out of the product: not in the built package list, and imported by nothing in it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from setuptools import find_packages

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("qtransformer", "pretrain", "finetune", "envs", "scripts")


def test_the_built_package_list_holds_no_research_module() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(ROOT), include=include)
    assert {"qtransformer", "pretrain", "finetune", "envs", "scripts"} <= set(packages)
    assert (ROOT / "research" / "exp_pretrain.py").is_file()  # there is something to leave out
    assert [p for p in packages if p.split(".")[0] == "research"] == []


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_nothing_in_the_product_imports_research() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "research"
        )
        for top in PRODUCT
        for path in (ROOT / top).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
