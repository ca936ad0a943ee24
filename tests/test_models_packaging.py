"""The built wheel holds every module and data file of the source tree and imports from outside the repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> import package (pyproject's package-dir mapping)
PACKAGE_DIRS = {"hwnas": "hwnas", "models": "hwnas.models", "latency": "hwnas.latency", "search": "hwnas.search",
                "deploy": "hwnas.deploy", "train": "hwnas.train", "profiles": "hwnas.profiles"}
DATA_DIRS = ["models/data", "profiles"]


def _source_modules() -> set[str]:
    mods = set()
    for folder, package in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            if any(not (ROOT / folder / Path(*rel.parts[:i]) / "__init__.py").is_file()
                   for i in range(len(rel.parts))):
                continue  # not inside a package (e.g. a loose script folder)
            parts = [package, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            mods.add(".".join(parts))
    return mods


def _source_data_files() -> set[str]:
    out = set()
    for folder in DATA_DIRS:
        top, package = folder.split("/")[0], PACKAGE_DIRS[folder.split("/")[0]]
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / top)
                out.add("/".join([*package.split("."), *rel.parts]))
    return out


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the source tree and unpack it."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for folder in PACKAGE_DIRS:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(dist), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = list(dist.glob("hwnas-*.whl"))
    assert len(wheels) == 1
    site = tmp / "site"
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(site)
    return site


def test_wheel_has_every_module_and_data_file(wheel_site):
    in_wheel = {p.relative_to(wheel_site).as_posix() for p in wheel_site.rglob("*") if p.is_file()}
    wheel_modules = set()
    for name in in_wheel:
        if name.endswith(".py"):
            parts = name[:-3].split("/")
            if parts[-1] == "__init__":
                parts.pop()
            wheel_modules.add(".".join(parts))
    missing = sorted(_source_modules() - wheel_modules)
    assert not missing, f"modules missing from the wheel (add their package to pyproject): {missing}"
    missing_data = sorted(_source_data_files() - in_wheel)
    assert not missing_data, f"data files missing from the wheel (package-data in pyproject): {missing_data}"
    # no generic top-level packages
    assert {n.split("/")[0] for n in in_wheel if not n.split("/")[0].endswith(".dist-info")} == {"hwnas"}


def test_every_module_imports_from_the_wheel_outside_the_repo(wheel_site, tmp_path):
    modules = sorted(m for m in _source_modules())
    script = textwrap.dedent(f"""
        import importlib, json, sys, traceback
        failed = {{}}
        for name in {modules!r}:
            try:
                importlib.import_module(name)
            except Exception:
                failed[name] = traceback.format_exc(limit=3)
        import hwnas, hwnas.models
        from hwnas.models import zoo
        from hwnas.models.spaces.nb201 import accuracy_table
        from hwnas.models.spaces.base import space_names
        print(json.dumps({{
            "failed": failed,
            "files": [hwnas.__file__, hwnas.models.__file__],
            "zoo": len(zoo.models()),
            "nb201": len(accuracy_table()),
            "spaces": space_names(),
        }}))
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(wheel_site)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["failed"], "\n".join(f"{k}:\n{v}" for k, v in result["failed"].items())
    assert all(f.startswith(str(wheel_site)) for f in result["files"])
    assert result["zoo"] == 15 and result["nb201"] == 15625
    assert {"imagenet224", "cifar32", "nb201"} <= set(result["spaces"])
    cli = subprocess.run([sys.executable, "-c", "from hwnas.cli.main import main; main()", "models", "list",
                          "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert len(json.loads(cli.stdout)) == 15
