"""Where the folders that ship beside the package are: ``migrations/`` and ``models/``.

In a checkout (and an editable install) they sit next to ``service/``; an installed wheel
carries them inside the package, as ``service/bundled_files/<name>`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """Return the shipped folder ``name``: the wheel's copy when installed from one, else
    the checkout's."""
    installed = _PACKAGE / "bundled_files" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
