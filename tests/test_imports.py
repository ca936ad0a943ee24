"""Data flows one way: models -> latency -> deploy, and search beside them; no back-edge import.

The sources are parsed (``ast``), not imported, so a function-local import
counts as much as a top-level one. ``deploy/`` (``hwnas.deploy``) is checked
when the checkout has it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> (its installed package, the packages it must never import).
RULES = {
    "models": ("hwnas.models", ("hwnas.latency", "hwnas.search", "hwnas.deploy")),
    "latency": ("hwnas.latency", ("hwnas.search", "hwnas.deploy")),
    "deploy": ("hwnas.deploy", ("hwnas.search",)),
    "train": ("hwnas.train", ("hwnas.latency", "hwnas.search", "hwnas.deploy")),
}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, a module of ``package``; ``from a import b``
    yields ``a.b`` too, since ``b`` may be a module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the module's own package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def back_edges(folder: Path, package: str, forbidden: tuple[str, ...]) -> list[str]:
    """``file:line imports module`` for every import of a forbidden package below ``folder``."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        sub = path.relative_to(folder).with_suffix("").parts
        module_package = ".".join((package, *sub[:-1]))
        for line, name in imported_modules(path.read_text(), module_package):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(folder.parent)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("folder", sorted(RULES))
def test_no_back_edge_imports(folder):
    package, forbidden = RULES[folder]
    if not (ROOT / folder).is_dir():
        pytest.skip(f"{folder}/ is not in this checkout")
    assert back_edges(ROOT / folder, package, forbidden) == []


def test_the_check_sees_every_form_of_import(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("import hwnas.search.evolution\nimport os\n")
    (tmp_path / "b.py").write_text("def f():\n    from hwnas import search\n")
    (tmp_path / "sub" / "c.py").write_text("from ...search import runs\nfrom .. import units\n")
    edges = back_edges(tmp_path, "hwnas.models", ("hwnas.search",))
    assert edges == [f"{tmp_path.name}/a.py:1 imports hwnas.search.evolution",
                     f"{tmp_path.name}/b.py:2 imports hwnas.search",
                     f"{tmp_path.name}/sub/c.py:1 imports hwnas.search",
                     f"{tmp_path.name}/sub/c.py:1 imports hwnas.search.runs"]
