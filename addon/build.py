"""Build the installable extension zip with Blender's own extension builder.

    python addon/build.py [--output-dir dist] [--blender-ext PATH]

Stages the add-on code (addon/*.py except this script), a copy of ppd_core/client.py as
ppd_client.py and blender_manifest.toml into build/extension/, then runs Blender's
`blender_ext.py build` (found in the bpy wheel, or given with --blender-ext) and
`validate` on the result. Prints the zip's path. This script is not shipped in the zip.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib

ADDON_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(ADDON_DIR)
MANIFEST = "blender_manifest.toml"
CLIENT_SOURCE = os.path.join("ppd_core", "client.py")
CLIENT_NAME = "ppd_client.py"


class BuildError(Exception):
    """The extension could not be staged, built or validated."""


def find_blender_ext() -> str:
    """Blender's extension command-line tool inside the installed bpy wheel."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("bpy is not installed: pip install bpy, or pass --blender-ext PATH/TO/blender_ext.py")
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")))
        if found:
            return found[-1]
    raise BuildError("blender_ext.py not found in the bpy package; pass --blender-ext")


def stage(target: str, repo_root: str = REPO_ROOT) -> str:
    """Copy the manifest, the add-on modules and the client into a fresh `target` folder."""
    client = os.path.join(repo_root, CLIENT_SOURCE)
    if not os.path.isfile(client):
        raise BuildError(f"{client} not found: the zip must ship the worker client")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    shutil.copy2(os.path.join(repo_root, MANIFEST), os.path.join(target, MANIFEST))
    shutil.copy2(client, os.path.join(target, CLIENT_NAME))
    for path in sorted(glob.glob(os.path.join(repo_root, "addon", "*.py"))):
        if os.path.basename(path) != os.path.basename(__file__):
            shutil.copy2(path, os.path.join(target, os.path.basename(path)))
    return target


def _run(command: list) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or "FATAL_ERROR" in output or "Error" in output:
        raise BuildError(f"{' '.join(command[1:3])} failed: {output}")
    return output


def build(output_dir: str, *, blender_ext: str | None = None, repo_root: str = REPO_ROOT) -> str:
    """Stage, build and validate; return the path of the zip."""
    tool = blender_ext or find_blender_ext()
    source = stage(os.path.join(repo_root, "build", "extension"), repo_root)
    with open(os.path.join(source, MANIFEST), "rb") as handle:
        manifest = tomllib.load(handle)
    os.makedirs(output_dir, exist_ok=True)
    zip_path = os.path.join(os.path.abspath(output_dir), f"{manifest['id']}-{manifest['version']}.zip")
    _run([sys.executable, tool, "validate", source])
    _run([sys.executable, tool, "build", "--source-dir", source, "--output-filepath", zip_path])
    _run([sys.executable, tool, "validate", zip_path])
    return zip_path


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO_ROOT, "dist"), help="where the zip goes")
    parser.add_argument("--blender-ext", default=None, help="path of Blender's blender_ext.py")
    args = parser.parse_args(argv)
    try:
        print(build(args.output_dir, blender_ext=args.blender_ext))
    except (BuildError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
