"""Build the installable extension zip: the add-on code, the manifest and a wheel of this project.

    python addon/build.py [--output-dir dist] [--blender-ext PATH]

The wheel (`pip wheel` of the checkout, no dependencies) is what makes the add-on work:
Blender unpacks the wheels a manifest lists into its own Python, so the add-on's
`import ppd_core.client` finds the worker client, the options table and the result-file
reader there; and "Set up backend" installs the same wheel, with its dependencies, into the
backend's environment. The zip is written here with the standard library (manifest at the
root, the add-on modules beside it, the wheel under wheels/); when Blender's own extension
tool is at hand (the bpy wheel, or --blender-ext) the staged folder and the zip are also
validated with it. Prints the zip's path. This script is not shipped in the zip.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile

ADDON_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(ADDON_DIR)
MANIFEST = "blender_manifest.toml"
WHEELS = "wheels"


class BuildError(Exception):
    """The extension could not be staged, built or validated."""


def find_blender_ext() -> str | None:
    """Blender's extension command-line tool inside the installed bpy wheel, or None."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")))
        if found:
            return found[-1]
    return None


def package_version(repo_root: str) -> str:
    """`ppd_core.__version__`, read from the source (the wheel's version comes from it)."""
    with open(os.path.join(repo_root, "ppd_core", "__init__.py"), encoding="utf-8") as handle:
        match = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.MULTILINE)
    if match is None:
        raise BuildError("ppd_core/__init__.py has no __version__")
    return match.group(1)


def build_wheel(repo_root: str, folder: str) -> str:
    """A wheel of the checkout (no dependencies) in `folder`; its path. Offline when this
    Python already has setuptools; otherwise pip fetches it into an isolated build."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", folder, repo_root]
    if importlib.util.find_spec("setuptools") is not None:
        command.insert(4, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = glob.glob(os.path.join(folder, "*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise BuildError(f"building the wheel failed: {(done.stdout + done.stderr).strip()[-600:]}")
    return wheels[0]


def staged_manifest(repo_root: str, wheel_name: str) -> str:
    """The manifest's text with the wheel listed; refuses a manifest whose version is not the package's."""
    with open(os.path.join(repo_root, MANIFEST), encoding="utf-8") as handle:
        text = handle.read()
    manifest = tomllib.loads(text)
    version = package_version(repo_root)
    if manifest.get("version") != version:
        raise BuildError(f"{MANIFEST} says version {manifest.get('version')} but ppd_core is {version}")
    if "wheels" in manifest:
        raise BuildError(f"{MANIFEST} must not list wheels: the build adds the project's own")
    line = f'wheels = ["./{WHEELS}/{wheel_name}"]\n\n'
    table = re.search(r"^\[", text, re.MULTILINE)  # top-level keys go before the first table
    return text + "\n" + line if table is None else text[:table.start()] + line + text[table.start():]


def stage(target: str, repo_root: str = REPO_ROOT) -> str:
    """Fill a fresh `target` folder with the manifest, the add-on modules and the wheel."""
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(os.path.join(target, WHEELS))
    wheel = build_wheel(repo_root, os.path.join(target, WHEELS))
    with open(os.path.join(target, MANIFEST), "w", encoding="utf-8") as handle:
        handle.write(staged_manifest(repo_root, os.path.basename(wheel)))
    for path in sorted(glob.glob(os.path.join(repo_root, "addon", "*.py"))):
        if os.path.basename(path) != os.path.basename(__file__):
            shutil.copy2(path, os.path.join(target, os.path.basename(path)))
    return target


def write_zip(source: str, zip_path: str) -> None:
    """Zip the staged folder (paths relative to it, manifest at the root), atomically."""
    handle, temporary = tempfile.mkstemp(prefix=".ext-", suffix=".zip", dir=os.path.dirname(zip_path))
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for folder, _, files in os.walk(source):
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
        raise BuildError(f"Blender's validator refused {os.path.basename(path)}: {output}")


def build(output_dir: str, *, blender_ext: str | None = None, repo_root: str = REPO_ROOT) -> str:
    """Stage, zip and (where Blender's tool is at hand) validate; return the zip's path."""
    tool = blender_ext or find_blender_ext()
    with tempfile.TemporaryDirectory(prefix="ppd-extension-") as scratch:
        source = stage(os.path.join(scratch, "extension"), repo_root)
        with open(os.path.join(source, MANIFEST), "rb") as handle:
            manifest = tomllib.load(handle)
        if tool is not None:
            _validate(tool, source)
        os.makedirs(output_dir, exist_ok=True)
        zip_path = os.path.join(os.path.abspath(output_dir), f"{manifest['id']}-{manifest['version']}.zip")
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
