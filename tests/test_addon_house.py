"""The add-on's house rules, read from its source (no bpy needed): the bpy-free sub-package
never imports bpy, imports run one way (no cycle; state never imports operators), one
background-task mechanism, and the add-on imports from this project only the tested list
of modules that Blender's Python can load."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "addon"
STATE_MODULES = ("state", "settings", "session", "properties")


def _build_script():
    spec = importlib.util.spec_from_file_location("ppd_addon_build", ADDON / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _addon_modules() -> dict:
    """{dotted name inside the add-on: parsed source}, build.py left out (it is not shipped)."""
    found = {}
    for path in sorted(ADDON.rglob("*.py")):
        relative = path.relative_to(ADDON)
        if relative.name == "build.py" or "__pycache__" in relative.parts:
            continue
        parts = relative.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _package_of(name: str, modules: dict) -> str:
    is_package = (ADDON / Path(*name.split(".")) / "__init__.py").is_file() if name else True
    return name if is_package else name.rpartition(".")[0]


def _is_module(root: Path, dotted: str) -> bool:
    path = root / Path(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(name: str, tree: ast.Module, modules: dict) -> tuple:
    """(the add-on's own modules `name` imports, the absolute modules it imports), anywhere in it:
    `from A import b` counts as importing A.b when that is a module, else A."""
    own, absolute = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            absolute.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                absolute.add(target if _is_module(REPO, target) else node.module)
        elif isinstance(node, ast.ImportFrom):
            package = _package_of(name, modules)
            parts = package.split(".") if package else []
            base = ".".join(parts[: len(parts) - node.level + 1] + (node.module.split(".") if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}".strip(".")
                own.add(target if target in modules else base)
    return own - {name}, absolute


def test_the_bpy_free_package_never_imports_bpy():
    """Every module of addon/backend imports in a Python where `import bpy` fails, and none
    names bpy anywhere, not even in a function."""
    backend = ADDON / "backend"
    names = sorted(path.stem for path in backend.glob("*.py") if path.stem != "__init__")
    assert {"tasks", "setup", "interpreters", "weights_download", "backend_runs", "wording"} <= set(names)
    for path in backend.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] != "bpy" for alias in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in ("bpy", "bpy_extras", "mathutils"), path
    code = ("import importlib, sys; sys.modules['bpy'] = None; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
            f"[importlib.import_module('backend.' + name) for name in {names!r}]; "
            "assert 'bpy' not in [m for m in sys.modules if sys.modules[m] is not None]")
    done = subprocess.run([sys.executable, "-c", code, str(ADDON), str(REPO)], capture_output=True, text=True,
                          check=False, cwd="/")
    assert done.returncode == 0, done.stderr


def test_the_addons_modules_import_one_way():
    """No import cycle among the add-on's modules, and the modules that hold state import no
    module that defines an operator (directly or through others)."""
    modules = _addon_modules()
    graph = {name: _imports(name, tree, modules)[0] for name, tree in modules.items()}
    operators = {name for name, tree in modules.items() for node in ast.walk(tree)
                 if isinstance(node, ast.ClassDef) and any(ast.unparse(base) == "bpy.types.Operator"
                                                           for base in node.bases)}
    assert {"run_ops", "backend_ops", "weights_ops", "print_ops"} <= operators

    def reachable(start: str) -> set:
        seen, waiting = set(), list(graph[start])
        while waiting:
            name = waiting.pop()
            if name not in seen:
                seen.add(name)
                waiting.extend(graph.get(name, ()))
        return seen

    for name in graph:
        if name == "":
            continue  # the package itself registers everything
        assert name not in reachable(name), f"{name} imports itself through {sorted(reachable(name))}"
    for name in STATE_MODULES:
        assert not reachable(name) & operators, f"{name} reaches operators {sorted(reachable(name) & operators)}"
    for name in (n for n in graph if n.split(".")[0] in ("backend", "scene")):  # the sub-packages stand alone
        assert {target.split(".")[0] for target in reachable(name)} <= {name.split(".")[0]}, name


def test_one_background_task_mechanism():
    """Threads are started only by backend.tasks, and only `state` registers Blender timers."""
    for name, tree in _addon_modules().items():
        source = ast.unparse(tree)
        if name != "backend.tasks":
            assert "threading.Thread(" not in source and "Thread(" not in source, name
        if name != "state":
            assert "timers.register(" not in source, name


def test_the_addon_imports_only_the_listed_modules_of_this_project_and_they_load_in_blender():
    build = _build_script()
    modules = _addon_modules()
    used = set()
    for name, tree in modules.items():
        for target in _imports(name, tree, modules)[1]:
            if target.split(".")[0] == "mesh":
                pytest.fail(f"{name} imports {target}: the add-on reaches mesh only through ppd_core")
            if target.startswith("ppd_core."):
                used.add(target)
    assert used <= set(build.BLENDER_MODULES), sorted(used - set(build.BLENDER_MODULES))
    closure = build.blender_closure(str(REPO))  # raises BuildError for anything Blender's Python lacks
    assert set(build.BLENDER_MODULES) <= set(closure) and "ppd_core.model" not in closure


def test_the_blender_closure_refuses_a_module_that_needs_more_than_numpy(tmp_path):
    build = _build_script()
    (tmp_path / "ppd_core").mkdir()
    (tmp_path / "ppd_core" / "__init__.py").write_text("")
    (tmp_path / "ppd_core" / "options.py").write_text("import numpy\nfrom ppd_core.heavy import x\n")
    (tmp_path / "ppd_core" / "heavy.py").write_text("from typing import TYPE_CHECKING\nimport torch\n"
                                                   "if TYPE_CHECKING:\n    import cv2\n")
    with pytest.raises(build.BuildError, match="ppd_core.heavy imports torch, which Blender's Python does not have"):
        build.blender_closure(str(tmp_path), ("ppd_core.options",))
    (tmp_path / "ppd_core" / "heavy.py").write_text("from typing import TYPE_CHECKING\nx = 1\n"
                                                   "if TYPE_CHECKING:\n    import cv2\n"
                                                   "def later():\n    import torch\n")
    assert set(build.blender_closure(str(tmp_path), ("ppd_core.options",))) == {
        "ppd_core", "ppd_core.options", "ppd_core.heavy"}
    moved = build.vendored_source("from mesh.limits import A\nfrom mesh import data\n", "m")
    assert moved == "from ppd_core._mesh.limits import A\nfrom ppd_core._mesh import data\n"
    with pytest.raises(build.BuildError, match="not `import mesh.x`"):
        build.vendored_source("import mesh.limits\n", "m")
