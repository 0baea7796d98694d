"""The installed form of the project: what it declares and what it carries.

The image (Dockerfile) installs the project without the dev extras: a package imported by
service code but reachable only through a test dependency or another package's
dependencies would be missing there, or vanish when that package stops needing it. A wheel
(``pip install .``) must carry what the checkout keeps beside ``service/``: the migrations
the server runs before serving and the shipped models.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

from alembic.script import ScriptDirectory

from service.migrate import alembic_config

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"service", "migrations"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(group: list[str]) -> set[str]:
    return {_canonical(re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0]) for spec in group}


def _third_party_imports(folders: list[Path]) -> dict[str, set[str]]:
    """Return each top-level third-party module imported in the folders, with where."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_package_the_service_imports_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = _declared(project["dependencies"])
    distributions = packages_distributions()
    imports = _third_party_imports([ROOT / "service", ROOT / "migrations"])
    assert "fastapi" in imports and "pydicom" in imports  # the scan reads the code

    undeclared = {
        module: sorted(paths)
        for module, paths in imports.items()
        if not {_canonical(d) for d in distributions.get(module, [])} & runtime
    }
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"


def test_the_wheel_lists_every_package_of_the_service() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]
    listed = set(setuptools["packages"])
    found = {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in [ROOT / "service", *(ROOT / "service").rglob("*")]
        # what setuptools would take for a package (service/web/static is one too)
        if folder.is_dir() and folder.name.isidentifier() and folder.name != "__pycache__"
    }
    assert "service.dicom" in found  # the scan finds packages
    assert sorted(found - listed) == [], "add these to [tool.setuptools].packages"
    bundled = {name for name in listed if name.startswith("service.bundled_files")}
    assert sorted(listed - found) == sorted(bundled)
    assert set(setuptools["package-dir"]) == bundled


def _build_wheel(tmp_path: Path) -> Path:
    """Build the project's wheel from a copy of the checkout (the build writes beside it)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("service", "migrations", "models"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    built = subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(dist), str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = dist.glob("vigil-*.whl")
    return wheel


def test_an_installed_wheel_migrates_and_finds_the_shipped_models(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        wheel.extractall(site)  # what pip installs into site-packages
    database = tmp_path / "installed.db"
    # Run from the unpacked wheel, not this checkout: the folders beside service/ are absent.
    probe = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "import service, service.migrate, service.settings\n"
        f"service.migrate.upgrade('sqlite:///{database}')\n"
        "print(json.dumps({'package': service.__file__,\n"
        "    'migrations': str(service.migrate.MIGRATIONS_DIR),\n"
        "    'models': str(service.settings.SHIPPED_MODELS)}))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    paths = json.loads(ran.stdout.strip().splitlines()[-1])
    bundled = site / "service" / "bundled_files"
    assert Path(paths["package"]).is_relative_to(site / "service")
    assert Path(paths["migrations"]) == bundled / "migrations"
    assert Path(paths["models"]) == bundled / "models"
    for bundle in ("vigil-cxr-demo", "vigil-lungs"):
        assert (bundled / "models" / bundle / "models" / "model.pt").is_file()
        assert (bundled / "models" / bundle / "configs" / "metadata.json").is_file()

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    with sqlite3.connect(database) as connection:
        [(version,)] = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert version == head
    assert {"instances", "access_log"} <= tables
