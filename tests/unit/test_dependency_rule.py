"""Imports point inward: domain <- adapters, domain <- api; only app/cli know both."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "apm"

# package -> prefixes it must never import
FORBIDDEN = {
    "domain": ("apm.adapters", "apm.api", "apm.app", "apm.cli", "apm.settings", "sqlalchemy",
               "litestar", "asyncpg", "alembic", "structlog"),
    "adapters": ("apm.api", "apm.app", "apm.cli", "litestar"),
    "api": ("apm.adapters", "apm.app", "apm.cli", "sqlalchemy", "asyncpg", "alembic"),
}
DOMAIN_ALLOWED_THIRD_PARTY = ("msgspec",)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _files(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_inward(package: str) -> None:
    violations = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in _files(package)
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[package])
    ]
    assert violations == []


def test_domain_uses_only_stdlib_and_msgspec() -> None:
    import sys

    stdlib = sys.stdlib_module_names
    outside = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in _files("domain")
        for name in _imports(path)
        if name.split(".")[0] not in stdlib
        and not name.startswith("apm.domain")
        and name.split(".")[0] not in DOMAIN_ALLOWED_THIRD_PARTY
        and name != "__future__"
    ]
    assert outside == []


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from apm.adapters.schema import api_requests\nimport sqlalchemy\n")
    assert _imports(bad) == ["apm.adapters.schema", "sqlalchemy"]
