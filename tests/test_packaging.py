"""What the service imports, its installed form declares.

The image (Dockerfile) installs the project without the dev extras: a package imported by
service code but reachable only through a test dependency or another package's
dependencies would be missing there, or vanish when that package stops needing it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

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
