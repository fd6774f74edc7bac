"""Build the installable extension zip: the add-on code, the manifest and two wheels of this project.

    python addon/build.py [--output-dir dist] [--blender-ext PATH]

Any Python 3.10+ with pip, no Blender. Two wheels, because they go to two places:
- Blender unpacks the wheel the manifest lists into its extensions' shared site-packages, so
  the add-on's `import ppd_core.client` works there. That wheel (depth_from_image_blender)
  holds only `BLENDER_MODULES` and what they import, all standard library and numpy, and no
  top-level `mesh`: the two `mesh` modules they need ride inside it as `ppd_core._mesh`, so no
  other extension's `mesh` can collide with ours. It is written here with the standard library.
- "Set up backend" installs the project's own wheel (`pip wheel` of the checkout, no
  dependencies; not listed in the manifest) with its dependencies into the backend.
The project's wheel needs the setuptools pyproject.toml asks for: the installed one is used
offline when it is recent enough, else pip builds in an isolated environment that fetches
it. The zip holds the manifest at the root, the add-on's packages beside it and the wheels
under wheels/; when Blender's own extension tool is at hand (the bpy wheel, or --blender-ext)
the staged folder and the zip are also validated with it. Prints the zip's path. This script
is not shipped in the zip.
"""

from __future__ import annotations

import argparse
import ast
import base64
import glob
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ADDON_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(ADDON_DIR)
MANIFEST = "blender_manifest.toml"
WHEELS = "wheels"
BLENDER_MODULES = ("ppd_core.batch", "ppd_core.client", "ppd_core.errors", "ppd_core.files.result_file",
                   "ppd_core.geometry.camera", "ppd_core.options", "ppd_core.weight_sources")
"""Every module of this project the add-on imports inside Blender (a test holds the add-on's
imports to this list): each, and all it imports, must need only the standard library and numpy."""
BLENDER_DIST = "depth_from_image_blender"
VENDORED_MESH = "ppd_core._mesh"
"""Where the Blender wheel carries the `mesh` modules the listed ones import."""
BLENDER_HAS = {"numpy"}
"""Packages beyond the standard library that every Blender's Python has."""
WHEEL_DATE = (2026, 1, 1, 0, 0, 0)
"""One timestamp for every file of the Blender wheel: the same sources make the same wheel."""


class BuildError(Exception):
    """The extension could not be staged, built or validated."""


def find_blender_ext() -> str | None:
    """Blender's extension command-line tool inside the installed bpy wheel, or None."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        pattern = os.path.join(folder, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
        found = sorted(glob.glob(pattern))
        if found:
            return found[-1]
    return None


def manifest_value(text: str, key: str) -> str | None:
    """A top-level string value of a TOML text (those before its first table), or None.
    Enough for the manifest's `id` and `version`, and it needs no tomllib (Python 3.11+)."""
    head = text[:match.start()] if (match := re.search(r"^\[", text, re.MULTILINE)) else text
    found = re.search(rf'^{re.escape(key)}\s*=\s*"([^"]*)"', head, re.MULTILINE)
    return found.group(1) if found else None


def package_version(repo_root: str) -> str:
    """`ppd_core.__version__`, read from the source (the wheel's version comes from it)."""
    with open(os.path.join(repo_root, "ppd_core", "__init__.py"), encoding="utf-8") as handle:
        match = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.MULTILINE)
    if match is None:
        raise BuildError("ppd_core/__init__.py has no __version__")
    return match.group(1)


def _version(text: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def needed_setuptools(repo_root: str) -> tuple:
    """The setuptools version pyproject.toml's build-system requires (its `setuptools>=X`)."""
    with open(os.path.join(repo_root, "pyproject.toml"), encoding="utf-8") as handle:
        match = re.search(r'"setuptools\s*>=\s*([0-9.]+)"', handle.read())
    return _version(match.group(1)) if match else (0,)


def installed_setuptools() -> tuple | None:
    """The version of setuptools in this Python, or None without one."""
    try:
        return _version(importlib.metadata.version("setuptools"))
    except importlib.metadata.PackageNotFoundError:
        return None


def whole_lines(output: str, count: int = 15) -> str:
    """The last `count` non-blank lines of a command's output, each whole, indented."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-count:]) or "    (no output)"


def build_wheel(repo_root: str, folder: str) -> str:
    """The project's wheel of the checkout (no dependencies) in `folder`; its path. Offline with
    this Python's setuptools when it is as recent as pyproject.toml asks, else in pip's
    isolated build environment (which fetches a recent one)."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", folder, repo_root]
    installed = installed_setuptools()
    if installed is not None and installed >= needed_setuptools(repo_root):
        command.insert(4, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = glob.glob(os.path.join(folder, "*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        isolation = "offline" if "--no-build-isolation" in command else "in an isolated build environment"
        raise BuildError(f"building the project's wheel ({isolation}) failed; pip said:\n"
                         f"{whole_lines(done.stdout + done.stderr)}")
    return wheels[0]


def module_path(repo_root: str, module: str) -> Path | None:
    """The source file of a module of this project (a package's __init__.py), or None."""
    base = Path(repo_root, *module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _import_time_nodes(body: list):
    """The import statements a module runs when imported: its top level, and inside `if`, `try`
    and class bodies, but not under `if TYPE_CHECKING:` nor in functions (lazy imports)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from _import_time_nodes(node.body)
            yield from _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for part in (node.body, *(handler.body for handler in node.handlers), node.orelse, node.finalbody):
                yield from _import_time_nodes(part)
        elif isinstance(node, ast.ClassDef):
            yield from _import_time_nodes(node.body)


def imported_modules(repo_root: str, module: str, tree: ast.Module) -> set:
    """The absolute names of the modules `module` imports when it is imported."""
    names = set()
    package = module if module_path(repo_root, module).name == "__init__.py" else module.rpartition(".")[0]
    for node in _import_time_nodes(tree.body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parent = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parent, *([base] if base else [])])
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names
                     if module_path(repo_root, f"{base}.{alias.name}") is not None)
    return names


def blender_closure(repo_root: str, modules=BLENDER_MODULES) -> dict:
    """{module: its source file} of `modules`, what they import from this project and their
    packages; BuildError naming any import Blender's Python lacks."""
    found: dict = {}
    waiting = list(modules)
    while waiting:
        module = waiting.pop()
        if module in found:
            continue
        path = module_path(repo_root, module)
        if path is None:
            raise BuildError(f"{module}: no such module in {repo_root}")
        found[module] = path
        parents = [".".join(module.split(".")[:depth]) for depth in range(1, module.count(".") + 1)]
        waiting.extend(parents)
        for name in imported_modules(repo_root, module, ast.parse(path.read_text(encoding="utf-8"))):
            top = name.split(".")[0]
            if top in ("ppd_core", "mesh"):
                waiting.append(name)
            elif top != "__future__" and top not in sys.stdlib_module_names and top not in BLENDER_HAS:
                raise BuildError(f"{module} imports {name}, which Blender's Python does not have: the add-on may "
                                 f"import only modules that need the standard library and numpy")
    return found


def vendored(module: str) -> str:
    """The module's name inside the Blender wheel (`mesh.x` becomes `ppd_core._mesh.x`)."""
    return VENDORED_MESH + module[len("mesh"):] if module.split(".")[0] == "mesh" else module


def vendored_source(text: str, module: str) -> str:
    """`text` with every import of `mesh` turned into an import of `VENDORED_MESH`; BuildError
    for a form that cannot be turned (`import mesh.x`)."""
    lines = text.splitlines(keepends=True)
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "mesh" for alias in node.names):
            raise BuildError(f"{module}: write `from mesh.x import ...`, not `import mesh.x`, so that the Blender "
                             f"wheel can carry it as {VENDORED_MESH}")
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "mesh":
            number = node.lineno - 1
            lines[number] = re.sub(r"\bfrom\s+mesh\b", f"from {VENDORED_MESH}", lines[number], count=1)
    result = "".join(lines)
    left = [node for node in ast.walk(ast.parse(result)) if isinstance(node, ast.ImportFrom) and not node.level
            and (node.module or "").split(".")[0] == "mesh"]
    if left:
        raise BuildError(f"{module}: an import of mesh on line {left[0].lineno} could not be moved to {VENDORED_MESH}")
    return result


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"{name},sha256={digest},{len(data)}"


def build_blender_wheel(repo_root: str, folder: str) -> str:
    """The wheel Blender unpacks: `blender_closure` with `mesh` vendored; its path."""
    version = package_version(repo_root)
    files = {}
    for module, path in sorted(blender_closure(repo_root).items()):
        name = vendored(module).replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        files[name] = vendored_source(path.read_text(encoding="utf-8"), module).encode("utf-8")
    info = f"{BLENDER_DIST}-{version}.dist-info"
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {BLENDER_DIST.replace('_', '-')}\nVersion: {version}\n"
                                 "Summary: The part of Depth from Image that runs inside Blender (client, options, "
                                 "result reader)\nRequires-Python: >=3.10\n").encode("utf-8")
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: depth-from-image addon/build.py\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = "\n".join([*(_record_line(name, data) for name, data in files.items()), f"{info}/RECORD,,"]) + "\n"
    files[f"{info}/RECORD"] = record.encode("utf-8")
    path = os.path.join(folder, f"{BLENDER_DIST}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(zipfile.ZipInfo(name, WHEEL_DATE), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def staged_manifest(repo_root: str, wheel_name: str) -> str:
    """The manifest's text with the Blender wheel listed; refuses a manifest whose version is
    not the package's, or that lists wheels itself."""
    with open(os.path.join(repo_root, MANIFEST), encoding="utf-8") as handle:
        text = handle.read()
    version = package_version(repo_root)
    if manifest_value(text, "version") != version:
        raise BuildError(f"{MANIFEST} says version {manifest_value(text, 'version')} but ppd_core is {version}")
    if re.search(r"^wheels\s*=", text, re.MULTILINE):
        raise BuildError(f"{MANIFEST} must not list wheels: the build adds the project's own")
    line = f'wheels = ["./{WHEELS}/{wheel_name}"]\n\n'
    table = re.search(r"^\[", text, re.MULTILINE)  # top-level keys go before the first table
    return text + "\n" + line if table is None else text[:table.start()] + line + text[table.start():]


def stage(target: str, repo_root: str = REPO_ROOT) -> str:
    """Fill a fresh `target` folder with the manifest, the add-on's packages and both wheels."""
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(os.path.join(target, WHEELS))
    build_wheel(repo_root, os.path.join(target, WHEELS))
    blender_wheel = build_blender_wheel(repo_root, os.path.join(target, WHEELS))
    with open(os.path.join(target, MANIFEST), "w", encoding="utf-8") as handle:
        handle.write(staged_manifest(repo_root, os.path.basename(blender_wheel)))
    addon = Path(repo_root, "addon")
    for path in sorted(addon.rglob("*.py")):
        relative = path.relative_to(addon)
        if relative == Path(os.path.basename(__file__)) or "__pycache__" in relative.parts:
            continue
        os.makedirs(os.path.join(target, relative.parent), exist_ok=True)
        shutil.copy2(path, os.path.join(target, relative))
    return target


def write_zip(source: str, zip_path: str) -> None:
    """Zip the staged folder (paths relative to it, manifest at the root), atomically."""
    handle, temporary = tempfile.mkstemp(prefix=".ext-", suffix=".zip", dir=os.path.dirname(zip_path))
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for folder, folders, files in os.walk(source):
                folders.sort()
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    archive.write(path, os.path.relpath(path, source).replace(os.sep, "/"))
        os.replace(temporary, zip_path)
    except BaseException:
        os.unlink(temporary)
        raise


def _validate(tool: str, path: str) -> None:
    done = subprocess.run([sys.executable, tool, "validate", path], capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or "FATAL_ERROR" in output or "Error" in output:
        raise BuildError(f"Blender's validator refused {os.path.basename(path)}:\n{whole_lines(output)}")


def build(output_dir: str, *, blender_ext: str | None = None, repo_root: str = REPO_ROOT) -> str:
    """Stage, zip and (where Blender's tool is at hand) validate; return the zip's path."""
    tool = blender_ext or find_blender_ext()
    with tempfile.TemporaryDirectory(prefix="ppd-extension-") as scratch:
        source = stage(os.path.join(scratch, "extension"), repo_root)
        with open(os.path.join(source, MANIFEST), encoding="utf-8") as handle:
            text = handle.read()
        if tool is not None:
            _validate(tool, source)
        os.makedirs(output_dir, exist_ok=True)
        zip_path = os.path.join(os.path.abspath(output_dir),
                                f"{manifest_value(text, 'id')}-{manifest_value(text, 'version')}.zip")
        write_zip(source, zip_path)
    if tool is not None:
        try:
            _validate(tool, zip_path)
        except BuildError:
            os.unlink(zip_path)
            raise
    return zip_path


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO_ROOT, "dist"), help="where the zip goes")
    parser.add_argument("--blender-ext", default=None, help="path of Blender's blender_ext.py (to validate)")
    args = parser.parse_args(argv)
    try:
        print(build(args.output_dir, blender_ext=args.blender_ext))
    except (BuildError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
