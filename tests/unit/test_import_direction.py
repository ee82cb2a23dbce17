"""Imports run one way, safety_api -> geo, notifications: the domain packages know no web framework."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("geo", "notifications")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import, at any depth (inside functions too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def refused(package: str, module: str) -> bool:
    top = module.split(".")[0]
    others = [p for p in PACKAGES if p != package]
    return top in ("flask", "safety_api") or top.startswith("flask_") or top in others


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_domain_packages_import_neither_flask_nor_the_app_nor_each_other(package):
    files = sources(package)
    assert files, f"no sources under {package}/"
    offences = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                for path in files
                for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8")))
                if refused(package, module)]
    assert offences == []


@pytest.mark.parametrize("source, offending", [
    ("import flask", True), ("from flask import g", True), ("import flask_sqlalchemy", True),
    ("from safety_api.models import User", True), ("def f():\n    import safety_api.clock", True),
    ("from notifications.push import PushMessage", True), ("import numpy", False), ("from geo.graph import X", False),
    ("from . import graph", False), ("import flaskless", False),
])
def test_the_scan_catches_what_it_should(source, offending):
    hits = [m for _line, m in imported_modules(ast.parse(source)) if refused("geo", m)]
    assert bool(hits) == offending
