"""Imports go one way (docs/architecture.md): server -> engines -> scott; loadtests/ speaks HTTP only.

Read from the source with `ast`, so an import inside a function counts as much as one at the top of a file, and a
package that is never imported by the tests is checked all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> the top-level packages its files must not import
FORBIDDEN = {
    "scott": {"engines", "server"},
    "engines": {"server"},
    "loadtests": {"scott", "engines", "server"},
}


def imported_modules(tree: ast.Module, package: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree, relative ones resolved against package, and of
    importlib.import_module / __import__ calls with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
            elif node.level - 1 < len(package):  # beyond the top-level package it does not import at all
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                # `from .. import x` may name a module: x counts as imported too
                found += [(node.lineno, f"{module}.{alias.name}" if module else alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def wrong_way_imports(root: Path, forbidden: dict[str, set[str]]) -> list[str]:
    """'path:line imports module' for each import of a package its folder must not import, in file order."""
    offences: list[str] = []
    for folder, banned in forbidden.items():
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root)
            package = list(relative.parent.parts)  # a module's relative imports start from its folder
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(relative))
            for line, module in sorted(imported_modules(tree, package)):
                if module.split(".")[0] in banned:
                    offences.append(f"{relative.as_posix()}:{line} imports {module}")
    return offences


def test_imports_go_one_way() -> None:
    offences = wrong_way_imports(ROOT, FORBIDDEN)
    assert not offences, "imports against server -> engines -> scott (loadtests: HTTP only):\n" + "\n".join(offences)


def test_every_package_checked_is_there() -> None:
    for folder in FORBIDDEN:
        assert any((ROOT / folder).rglob("*.py")), f"no Python files under {folder}/: the check would pass vacuously"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tiny repository whose files break each rule once, in each way an import can be written."""
    files = {
        "scott/__init__.py": "",
        "scott/x.py": "from server import y\n",
        "scott/sub/deep.py": "def f():\n    import engines.loader\n",
        "scott/sub/rel.py": "from .. import schedule\nfrom . import sibling\n",
        "scott/dynamic.py": "import importlib\nimportlib.import_module('server.app')\n",
        "scott/fine.py": "import numpy\nfrom scott.schedule import x\nfrom . import fine\n",
        "engines/a.py": "import scott\nimport server.app as app\n",
        "loadtests/locustfile.py": "import locust\nfrom scott.pipeline import ImageRequest\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_check_reports_each_wrong_way_import_with_its_file_and_line(tree: Path) -> None:
    assert wrong_way_imports(tree, FORBIDDEN) == [
        "scott/dynamic.py:2 imports server.app",
        "scott/sub/deep.py:2 imports engines.loader",
        "scott/x.py:1 imports server",
        "engines/a.py:2 imports server.app",
        "loadtests/locustfile.py:2 imports scott.pipeline",
    ]
