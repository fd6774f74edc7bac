"""The ppd-mesh command end to end: depth files the tests write, a tiny model, bad inputs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import trimesh
from PIL import Image

from ppd_core.mesh import main

H, W = 48, 64


@pytest.fixture
def scene(tmp_path):
    """A photo and a metric depth map with a box in front of a wall."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    photo = tmp_path / "photo.png"
    Image.fromarray(rgb).save(photo)
    depth = np.full((H, W), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    depth_file = tmp_path / "depth.npy"
    np.save(depth_file, depth)
    return photo, depth_file, rgb


def test_stl_solid_is_watertight_and_exactly_as_wide_as_asked(scene, capsys):
    photo, depth, _ = scene
    code = main([str(photo), "--depth", str(depth), "--stl", "--width-mm", "73.5", "--quiet"])
    assert code == 0
    solid = trimesh.load(photo.with_suffix(".stl"))
    assert solid.is_watertight and solid.volume > 0
    assert solid.extents[0] == pytest.approx(73.5, abs=0.01)
    out = capsys.readouterr().out
    assert "photo.stl" in out and "watertight yes" in out and "check:" in out and "manifold yes" in out


def test_obj_glb_are_textured_and_ply_reads_in_open3d(scene, tmp_path):
    photo, depth, rgb = scene
    folder = tmp_path / "out"
    folder.mkdir()
    assert main([str(photo), "--depth", str(depth), "--obj", "--glb", "--ply", "-o", str(folder), "--quiet"]) == 0
    for name in ("photo.obj", "photo.glb"):
        loaded = trimesh.load(folder / name, force="mesh")
        assert loaded.visual.kind == "texture" and len(loaded.faces) > 1000
        image = getattr(loaded.visual.material, "image", None) or loaded.visual.material.baseColorTexture
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), rgb)
        # glTF frame: the camera looks down -z, so every vertex has z < 0
        assert loaded.vertices[:, 2].max() < 0
    mesh = o3d.io.read_triangle_mesh(str(folder / "photo.ply"))
    assert len(mesh.triangles) > 1000 and mesh.has_vertex_colors()


def test_no_triangle_spans_the_synthetic_depth_step(scene, tmp_path):
    photo, depth, _ = scene
    assert main([str(photo), "--depth", str(depth), "--npz", "--quiet"]) == 0
    with np.load(photo.with_suffix(".npz")) as data:
        z = data["vertices"][:, 2][data["faces"]]
        assert str(data["frame"]) == "opencv" and str(data["kind"]) == "mesh"
    assert not np.any((z.min(axis=1) < 1.4) & (z.max(axis=1) > 1.6))


def test_points_and_decimation(scene, tmp_path):
    photo, depth, _ = scene
    assert main([str(photo), "--depth", str(depth), "--ply", "--points", "--quiet"]) == 0
    cloud = o3d.io.read_point_cloud(str(photo.with_suffix(".ply")))
    assert len(cloud.points) > 0.9 * H * W and cloud.has_colors() and cloud.has_normals()
    assert main([str(photo), "--depth", str(depth), "--glb", "--decimate", "1200", "--quiet"]) == 0
    faces = len(trimesh.load(photo.with_suffix(".glb"), force="mesh").faces)
    assert abs(faces - 1200) <= 60


def test_full_path_from_a_photo_with_a_small_random_model(scene, tmp_path, capsys):
    from tests.checkpoints import write_small_weights

    photo, _, _ = scene
    weights = write_small_weights(tmp_path / "weights")
    # A random network's depth is noise, so ask for solids (a scene mesh would be all cut).
    code = main([str(photo), "--weights", str(weights), "--stl", "--npz", "--solid", "--depth-png",
                 "--resolution", str(64 * 48), "--steps", "2", "--preset", "tabletop"])
    assert code == 0, capsys.readouterr().err
    assert trimesh.load(photo.with_suffix(".stl")).is_watertight
    with np.load(photo.with_suffix(".npz")) as data:
        assert str(data["kind"]) == "solid" and data["faces"].shape[0] > 0
    stored = np.asarray(Image.open(tmp_path / "photo_depth.png"))
    assert stored.dtype == np.uint16 and stored.shape == (H, W)
    assert stored.std() > 0
    from ppd_core.files.depth_file import read_depth_file  # millimetres, read back as metres
    np.testing.assert_allclose(read_depth_file(tmp_path / "photo_depth.png", "metric"),
                               np.where(stored > 0, stored * 0.001, np.nan), rtol=1e-6)
    assert (tmp_path / "photo_depth_preview.png").is_file()
    err = capsys.readouterr().err
    assert "diffusion" in err  # plain progress lines when not a terminal


def test_missing_and_unreadable_photos_fail_alone(scene, tmp_path, capsys):
    photo, depth, _ = scene
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    code = main([str(tmp_path / "missing.jpg"), str(broken), "--stl", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.jpg: no such file" in err[0] and "broken.jpg" in err[1]
    assert not list(tmp_path.glob("*.stl"))


def test_depth_file_of_the_wrong_size_is_refused(scene, tmp_path, capsys):
    photo, _, _ = scene
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((40, 40), np.float32))
    assert main([str(photo), "--depth", str(wrong), "--stl", "--quiet"]) == 1
    assert "40x40" in capsys.readouterr().err
    assert not photo.with_suffix(".stl").exists()


def test_existing_output_needs_force_and_photo_is_never_overwritten(scene, capsys):
    photo, depth, _ = scene
    target = photo.with_suffix(".stl")
    target.write_bytes(b"keep me")
    assert main([str(photo), "--depth", str(depth), "--stl", "--quiet"]) == 1
    assert "--force" in capsys.readouterr().err and target.read_bytes() == b"keep me"
    assert main([str(photo), "--depth", str(depth), "--stl", "--quiet", "--force"]) == 0
    assert target.read_bytes() != b"keep me"
    before = photo.read_bytes()
    assert main([str(photo), "--depth", str(depth), "--depth-png", "-o", str(photo), "--force", "--quiet"]) == 1
    assert "photo itself" in capsys.readouterr().err and photo.read_bytes() == before


def test_unwritable_folder_is_a_clear_failure(scene, tmp_path, capsys):
    photo, depth, _ = scene
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root ignores folder permissions; /proc takes no new files from anyone
    folder = Path("/proc/self") if os.geteuid() == 0 else locked
    try:
        code = main([str(photo), "--depth", str(depth), "--stl", "-o", str(folder), "--quiet"])
    finally:
        locked.chmod(0o700)
    assert code == 1
    err = capsys.readouterr().err
    assert str(folder) in err and "cannot write" in err and err.count("\n") == 1
    assert list(locked.iterdir()) == []


def test_output_file_name_must_match_its_kind(scene, tmp_path, capsys):
    photo, depth, _ = scene
    assert main([str(photo), "--depth", str(depth), "--stl", "-o", str(tmp_path / "x.ply"), "--quiet"]) == 1
    assert "needs a .stl file name" in capsys.readouterr().err
    assert main([str(photo), "--depth", str(depth), "--stl", "-o", str(tmp_path / "x.stl"), "--quiet"]) == 0
    assert trimesh.load(tmp_path / "x.stl").is_watertight


def test_usage_errors_exit_2(scene):
    photo, depth, _ = scene
    assert main([str(photo), "--stl", "--method", "marching"]) == 2
    assert main([str(photo), "--stl", "--decimate", "0"]) == 2
    assert main([str(photo), "--stl", "--width-mm", "-5"]) == 2
    assert main([str(photo), "--stl", "--edge-strength", "3"]) == 2
    assert main([str(photo), "--stl", "--resolution", str(10**8)]) == 2
    assert main([str(photo), "--stl", "--seed", str(2**70)]) == 2
    assert main([str(photo), "--stl", "--fov", "nan"]) == 2
    assert main([str(photo), "--stl", "--method", "poisson", "--poisson-depth", "1"]) == 2


def test_runs_as_a_process(scene):
    photo, depth, _ = scene
    done = subprocess.run([sys.executable, "-m", "ppd_core.mesh", str(photo), "--depth", str(depth), "--3mf"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "photo.3mf" in done.stdout and "watertight yes" in done.stdout
    assert photo.with_suffix(".3mf").stat().st_size > 1000
    failed = subprocess.run([sys.executable, "-m", "ppd_core.mesh", str(photo) + ".nope", "--stl"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    import io

    from ppd_core.progress_display import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    bar = Progress("photo.jpg", quiet=False, stream=terminal)
    bar("diffusion", 0.5, "step 2/4")
    bar.close()
    assert "photo.jpg" in terminal.getvalue() and "%" in terminal.getvalue() and "step 2/4" in terminal.getvalue()

    plain = io.StringIO()
    lines = Progress("photo.jpg", quiet=False, stream=plain)
    for stage in ("load", "load", "diffusion", "export"):
        lines(stage, 1.0, "")
    assert plain.getvalue().splitlines() == ["photo.jpg: load", "photo.jpg: diffusion", "photo.jpg: export"]

    silent = io.StringIO()
    Progress("photo.jpg", quiet=True, stream=silent)("load", 1.0, "x")
    assert silent.getvalue() == ""


def test_plain_progress_lines_say_each_step_once_with_the_time_elapsed_and_left(monkeypatch):
    """A log (stderr not a terminal) gets every diffusion step of a real network, whose steps
    take seconds, and never the stage's name twice ("diffusion: diffusion step", "done done")."""
    import io

    from ppd_core import progress_display

    clock = iter(float(t) for t in range(0, 1000, 5))  # each event 5 s after the last
    monkeypatch.setattr(progress_display.time, "monotonic", lambda: next(clock))
    plain = io.StringIO()
    lines = progress_display.Progress("photo.jpg", quiet=False, stream=plain)
    lines("load", 0.0, "reading photo.jpg")
    for step in range(5):
        lines("diffusion", step / 4, f"diffusion step {step}/4")
    lines("diffusion", 1.0, "diffusion step 4/4")  # the same message again: no new line
    lines.show("done", 1.0, "done")
    printed = plain.getvalue().splitlines()
    assert printed[0] == "photo.jpg: load: reading photo.jpg (5 s elapsed)"
    assert [line.split(" (")[0] for line in printed[1:6]] == [f"photo.jpg: diffusion: step {n}/4" for n in range(5)]
    # at 15 s the photo is 26 % done (load, model, encoder, a quarter of the diffusion): 42 s to go
    assert printed[2] == "photo.jpg: diffusion: step 1/4 (15 s elapsed, about 42 s left)"
    assert printed[6] == "photo.jpg: done (40 s elapsed)" and len(printed) == 7


def test_poisson_method_gives_a_textured_mesh_and_a_closed_solid(scene, capsys):
    photo, depth, _ = scene
    code = main([str(photo), "--depth", str(depth), "--method", "poisson", "--poisson-depth", "6",
                 "--glb", "--stl", "--width-mm", "50", "--quiet"])
    assert code == 0, capsys.readouterr().err
    surface = trimesh.load(photo.with_suffix(".glb"), force="mesh")
    assert surface.visual.kind == "texture" and len(surface.faces) > 500
    assert np.all((surface.visual.uv >= 0) & (surface.visual.uv <= 1))
    solid = trimesh.load(photo.with_suffix(".stl"))
    assert solid.is_watertight and solid.volume > 0
    # the photo's footprint and base + relief, as the grid route's solid (5 + 2 mm by default)
    assert solid.extents == pytest.approx([50.0, 50.0 * H / W, 7.0], abs=1e-3)


def test_subprocess_runs_the_photo_in_a_worker(scene, tmp_path, capsys):
    photo, depth, _ = scene
    code = main([str(photo), "--depth", str(depth), "--stl", "--npz", "--subprocess", "-o", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert trimesh.load(photo.with_suffix(".stl")).is_watertight
    assert "photo.stl" in captured.out and "watertight yes" in captured.out
    assert "diffusion" in captured.err  # the worker's progress reaches the display


def test_subprocess_reports_a_failed_photo_in_one_line(scene, capsys):
    photo, depth, _ = scene
    code = main([str(photo), "--depth", str(depth), "--depth-kind", "normalized", "--near", "5", "--far", "1",
                 "--stl", "--subprocess", "--quiet"])
    assert code == 2  # near >= far is refused before any worker starts
    assert "near=5.0, far=1.0" in capsys.readouterr().err
    wrong = photo.parent / "wrong.npy"
    np.save(wrong, np.ones((40, 40), np.float32))
    code = main([str(photo), "--depth", str(wrong), "--stl", "--subprocess", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "40x40" in err[0]
    assert not photo.with_suffix(".stl").exists()


def test_an_unexpected_error_is_one_line_and_the_next_photo_still_runs(scene, tmp_path, capsys, monkeypatch):
    import ppd_core.pipeline

    photo, depth, rgb = scene
    second = tmp_path / "second.png"
    Image.fromarray(rgb).save(second)
    real = ppd_core.pipeline.run_photo
    calls = []

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise ValueError("something broke")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ppd_core.pipeline, "run_photo", flaky)
    code = main([str(photo), str(second), "--depth-png", "--weights", str(tmp_path / "none"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(calls) == 2
    assert err[0] == f"ppd-mesh: {photo}: internal error (ValueError: something broke); please report it"
    assert "Traceback" not in "\n".join(err)


def test_depth_with_no_usable_value_is_one_line_naming_the_file(scene, tmp_path, capsys):
    photo, _, _ = scene
    absurd = tmp_path / "absurd.npy"
    np.save(absurd, np.full((H, W), 1e30))
    assert main([str(photo), "--depth", str(absurd), "--stl", "--ply", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "absurd.npy: no usable depth" in err and "units" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["absurd.npy", "depth.npy", "photo.png"]
    assert main([str(photo), "--stl", "--near", "1", "--far", "1e12"]) == 2


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_during_export_unwinds_like_ctrl_c(scene, tmp_path, capsys, monkeypatch):
    import signal

    from ppd_core.files import outputs as writing

    photo, depth, _ = scene
    real = dict(writing.ENCODERS)
    calls = []

    def encode_then_terminate(kind):
        def encode(source, files):
            calls.append(real[kind](source, files))
            if len(calls) == 2:  # two outputs encoded, the third not yet
                os.kill(os.getpid(), signal.SIGTERM)
            return calls[-1]
        return encode

    for kind in ("stl", "ply", "glb"):
        monkeypatch.setitem(writing.ENCODERS, kind, encode_then_terminate(kind))
    handler = signal.getsignal(signal.SIGTERM)
    code = main([str(photo), "--depth", str(depth), "--stl", "--ply", "--glb", "--quiet"])
    assert code == 128 + signal.SIGTERM and len(calls) == 2
    assert "interrupted; nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.npy", "photo.png"]  # no staging folder
    assert signal.getsignal(signal.SIGTERM) is handler


def test_force_never_replaces_a_folder_named_like_an_output(scene, capsys):
    photo, depth, _ = scene
    folder = photo.with_suffix(".stl")
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert main([str(photo), "--depth", str(depth), "--stl", "--force", "--quiet"]) == 1
    assert "photo.stl: is a folder" in capsys.readouterr().err and (folder / "keep.txt").exists()


def test_two_photos_never_write_the_same_file_and_inputs_are_never_overwritten(scene, tmp_path, capsys):
    photo, depth, rgb = scene
    other = tmp_path / "elsewhere" / "photo.png"
    other.parent.mkdir()
    Image.fromarray(rgb[::-1]).save(other)
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "no-weights"
    empty.mkdir()
    assert main([str(photo), str(other), "--depth-png", "-o", str(out), "--weights", str(empty), "--quiet"]) == 1
    err = capsys.readouterr().err.splitlines()  # the first fails for want of weights, the second before that
    assert len(err) == 2 and f"{other}: {out / 'photo_depth.png'}: already the output of {photo}" in err[0]
    made = tmp_path / "photo_depth.png"
    assert main([str(photo), "--depth", str(depth), "--depth-png", "--quiet"]) == 0
    before = made.read_bytes()
    assert main([str(photo), "--depth", str(made), "--depth-png", "--force", "--quiet"]) == 1
    assert "refusing to overwrite the depth file" in capsys.readouterr().err and made.read_bytes() == before
    assert main(["/dev/null", "--stl", "--quiet"]) == 1
    assert "/dev/null: not a file" in capsys.readouterr().err


def test_depth_of_a_photo_turned_by_exif_says_how_to_fix_it(scene, tmp_path, capsys):
    _, depth, rgb = scene
    turned = tmp_path / "turned.jpg"
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: shown upright it is H wide and W tall
    image.save(turned, exif=exif)
    assert main([str(turned), "--depth", str(depth), "--stl", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"is {H}x{W}" in err and "EXIF orientation" in err and err.count("\n") == 1


def test_a_closed_stdout_loses_only_the_summary(scene):
    """`ppd-mesh ... | head -0`: the files are written, no traceback, exit 0."""
    photo, depth, _ = scene
    run = subprocess.Popen([sys.executable, "-m", "ppd_core.mesh", str(photo), "--depth", str(depth), "--stl",
                            "--ply", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()  # the reader is gone before the summary is printed
    err = run.stderr.read().decode()
    assert run.wait(timeout=120) == 0 and "Traceback" not in err and "Exception" not in err, err
    assert photo.with_suffix(".stl").exists() and photo.with_suffix(".ply").exists()


def test_scene_stl_summary_gives_the_size_the_slicer_will_show(scene, capsys):
    photo, depth, _ = scene
    assert main([str(photo), "--depth", str(depth), "--stl", "--no-solid", "--quiet"]) == 0
    extents = trimesh.load(photo.with_suffix(".stl")).extents  # z up, millimetres
    shown = " x ".join(f"{v:.1f}" for v in extents) + " mm (z up)"
    assert shown in capsys.readouterr().out


def test_a_name_near_the_file_name_limit_is_written_and_overwritten(scene, tmp_path):
    photo, depth, rgb = scene
    long_photo = tmp_path / ("p" * 246 + ".png")  # the .stl beside it is 250 bytes, under the 255 limit
    Image.fromarray(rgb).save(long_photo)
    for extra in ([], ["--force"]):
        assert main([str(long_photo), "--depth", str(depth), "--stl", "--quiet", *extra]) == 0
    assert long_photo.with_suffix(".stl").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_depth_png_says_how_many_pixels_were_beyond_its_range(scene, tmp_path, capsys):
    photo, _, _ = scene
    far = np.full((H, W), 2.0, np.float32)
    far[:10] = 150.0  # sky-like: more than a 16-bit millimetre PNG holds
    np.save(tmp_path / "far.npy", far)
    assert main([str(photo), "--depth", str(tmp_path / "far.npy"), "--depth-png", "--quiet"]) == 0
    assert f"{10 * W} px beyond 65.535 m stored as 65.535 m" in capsys.readouterr().out
    assert main([str(photo), "--depth", str(tmp_path / "depth.npy"), "--depth-png", "--force", "--quiet"]) == 0
    assert "beyond" not in capsys.readouterr().out


def test_a_file_made_by_another_run_meanwhile_is_not_overwritten_without_force(scene, monkeypatch, capsys):
    from ppd_core.files import outputs as writing

    photo, depth, _ = scene
    real_stl = writing.ENCODERS["stl"]

    def encode_while_another_run_writes(source, files):
        photo.with_suffix(".ply").write_bytes(b"another run's")  # after the up-front checks
        return real_stl(source, files)

    monkeypatch.setitem(writing.ENCODERS, "stl", encode_while_another_run_writes)
    assert main([str(photo), "--depth", str(depth), "--stl", "--ply", "--quiet"]) == 1
    assert "photo.ply: already exists" in capsys.readouterr().err
    assert photo.with_suffix(".ply").read_bytes() == b"another run's" and not photo.with_suffix(".stl").exists()
    assert [p.name for p in photo.parent.iterdir() if p.name.startswith(".")] == []


def test_a_saved_result_remeshes_with_its_depth_camera_and_scale(scene, tmp_path, capsys):
    photo, depth, _ = scene
    assert main([str(photo), "--depth", str(depth), "--fov", "47", "--npz", "--quiet"]) == 0
    saved = photo.with_suffix(".npz")
    capsys.readouterr()
    assert main([str(photo), "--depth", str(saved), "--ply", "--stl", "--edge-strength", "0.9", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "depth scale: saved result (depth file (metres))" in out and "camera: saved result (given field of view)" in out
    with np.load(saved) as first:
        np.testing.assert_array_equal(first["depth"], np.load(depth))
        fx = float(first["intrinsics"][0])
    again = tmp_path / "again.npz"
    assert main([str(photo), "--depth", str(saved), "--npz", "-o", str(again), "--quiet"]) == 0
    with np.load(again) as second:
        assert float(second["intrinsics"][0]) == pytest.approx(fx)
    assert main([str(photo), "--depth", str(saved), "--depth-kind", "normalized", "--stl", "--force", "--quiet"]) == 1
    assert "result file holds metric depth" in capsys.readouterr().err


def test_subprocess_shows_paths_as_named_and_ends_with_the_batch_line(tmp_path, small_weights, capsys, monkeypatch):
    from tests.batch_helpers import make_shoot, small_run

    make_shoot(tmp_path / "shoot", photos=2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    code = main(["shoot/img00.png", "shoot/img01.png", "--stl", "-o", "out", "--subprocess", "--quiet",
                 *small_run(small_weights)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert any(line.startswith("out/img00.stl: ") for line in out) and not any(str(tmp_path) in line for line in out)
    assert out[-1].startswith("2 photos: 2 done, 0 skipped, 0 failed in ")


def test_an_output_folder_that_is_not_there_is_created_with_the_manifest_in_it(tmp_path, small_weights, capsys,
                                                                                 monkeypatch):
    from tests.batch_helpers import make_shoot, small_run

    make_shoot(tmp_path / "shoot", photos=2)
    monkeypatch.chdir(tmp_path)
    code = main(["shoot/", "--stl", "-o", "prints/2026", "--quiet", *small_run(small_weights)])
    assert code == 1  # the shoot's corrupt photo
    assert sorted(p.name for p in (tmp_path / "prints" / "2026").iterdir()) == [
        "img00.stl", "img01.stl", "ppd-mesh-manifest.jsonl"]
    assert not (tmp_path / "ppd-mesh-manifest.jsonl").exists()
    capsys.readouterr()
    photo = tmp_path / "shoot" / "img00.png"
    assert main([str(photo), "--stl", "-o", "single/file.stl", "--quiet", *small_run(small_weights)]) == 0
    assert (tmp_path / "single" / "file.stl").is_file()
    (tmp_path / "blocked").write_text("a file where the folder should be")
    code = main([str(photo), "--stl", "-o", "blocked/out", "--quiet", *small_run(small_weights)])
    assert code == 2 and "blocked/out: cannot create the output folder" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main([str(broken), "--stl", "-o", "failed/run/", "--quiet", *small_run(small_weights)]) == 1
    assert not (tmp_path / "failed").exists()  # nothing written: the folders it made are gone again


def test_version_help_examples_and_the_default_output(scene, capsys):
    from ppd_core import __version__

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"ppd-mesh {__version__}"
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "examples:\n  ppd-mesh photo.jpg " in help_text and "none named: --glb" in help_text
    assert "PPD_WEIGHTS" in help_text and "ppd_moge.pth + moge2.pt" in help_text
    photo, depth, _ = scene
    assert main([str(photo), "--depth", str(depth), "--quiet"]) == 0  # no output named: the textured mesh
    assert photo.with_suffix(".glb").is_file() and f"{photo.with_suffix('.glb')}: " in capsys.readouterr().out
