"""addon/build.py in a fresh `python -m venv`: the oldest Python the project supports (3.10
where installed), its stock setuptools (65.5, older than pyproject.toml asks), no bpy.

The build must then use pip's isolated build environment; these machines have no network,
so pip's index is a folder holding a wheel of this test environment's recent setuptools.
Slow-ish (a venv with pip, an isolated build): about 20 s on two cores."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _oldest_python() -> str:
    """The oldest supported Python here that can make a venv with pip (3.10, 3.11), else this one."""
    for name in ("python3.10", "python3.11"):
        found = shutil.which(name)
        if found and subprocess.run([found, "-c", "import venv, ensurepip"], capture_output=True,
                                    check=False).returncode == 0:
            return found
    return sys.executable


def wheel_of_installed(name: str, folder: Path) -> Path:
    """A wheel of the distribution `name` as installed here (its files and dist-info, zipped)."""
    distribution = importlib.metadata.distribution(name)
    path = folder / f"{name}-{distribution.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for file in distribution.files:
            if file.parts[0] != ".." and "__pycache__" not in file.parts:
                wheel.write(distribution.locate_file(file), file.as_posix())
    return path


@pytest.fixture(scope="module")
def stock_venv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stock")
    subprocess.run([_oldest_python(), "-m", "venv", str(folder / "venv")], check=True, capture_output=True)
    python = folder / "venv" / "bin" / "python"
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('setuptools'))"],
                             capture_output=True, text=True, check=False).stdout.strip()
    return python, version


def _build(python: Path, out: Path, find_links: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(find_links), PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([str(python), str(REPO / "addon" / "build.py"), "--output-dir", str(out)],
                          capture_output=True, text=True, cwd=out.parent, env=env, check=False, timeout=600)


def test_build_works_with_a_stock_venv_and_its_old_setuptools(stock_venv, tmp_path):
    python, setuptools = stock_venv
    assert setuptools and tuple(int(p) for p in setuptools.split(".")[:2]) < (77, 0)  # the stock, too-old one
    links = tmp_path / "links"
    links.mkdir()
    wheel_of_installed("setuptools", links)
    done = _build(python, tmp_path / "dist", links)
    assert done.returncode == 0, done.stderr
    zip_path = Path(done.stdout.strip().splitlines()[-1])
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    assert "wheels/depth_from_image-0.1.0-py3-none-any.whl" in names
    assert "wheels/depth_from_image_blender-0.1.0-py3-none-any.whl" in names


def test_a_failed_build_shows_pips_whole_lines(stock_venv, tmp_path):
    """Without a recent setuptools anywhere, the isolated build cannot start: the error names
    the requirement in pip's own, whole lines."""
    python, _ = stock_venv
    empty = tmp_path / "no-links"
    empty.mkdir()
    done = _build(python, tmp_path / "dist", empty)
    assert done.returncode == 1 and not list((tmp_path / "dist").glob("*.zip"))
    lines = done.stderr.splitlines()
    assert lines[0] == ("error: building the project's wheel (in an isolated build environment) failed; "
                        "pip said:")
    said = [line.strip() for line in lines[1:]]
    # Whole lines, as pip wrote them: the cause from its start to pip's own end of the line.
    assert ("ERROR: Could not find a version that satisfies the requirement setuptools>=77 (from versions: none)"
            in said), done.stderr
    assert "ERROR: No matching distribution found for setuptools>=77" in said
