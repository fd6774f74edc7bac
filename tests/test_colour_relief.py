"""Colour relief: colours to filaments in CIELAB, printable regions, the painted 3MF read back."""

import io
import zipfile

import cv2
import numpy as np
import pytest

from mesh.checks import check_mesh
from mesh.colour_relief import MIN_ISLAND_MM, lab, printable_labels, quantised
from mesh.data import MeshData, MeshError
from mesh.export import threemf_bytes
from mesh.painted_3mf import paint_code, paint_filament, read_painted_threemf
from mesh.print_options import filament_list
from mesh.relief_print import ReliefSpec, relief_print

QUADRANTS = {"white": (235, 235, 230), "red": (200, 30, 35), "blue": (30, 60, 200), "black": (20, 20, 20)}


def quadrant_photo(height=48, width=64):
    """Four colours, one a quadrant: white top left, red top right, blue bottom left, black bottom right."""
    rgb = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    rgb[:h, :w], rgb[:h, w:], rgb[h:, :w], rgb[h:, w:] = QUADRANTS.values()
    return rgb


def box_depth(height=48, width=64):
    depth = np.full((height, width), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    return depth


def test_paint_codes_are_the_slicers_whole_triangle_codes():
    assert [paint_code(n) for n in range(10)] == ["", "4", "8", "0C", "1C", "2C", "3C", "4C", "5C", "6C"]
    assert paint_code(16) == "DC"
    assert all(paint_filament(paint_code(n)) == n for n in range(17))
    with pytest.raises(ValueError, match="splits"):
        paint_filament("1C5")  # a triangle split in two halves (PrusaSlicer writes such trees)
    with pytest.raises(MeshError):
        paint_code(17)


def test_filaments_are_a_count_or_named_colours_in_slot_order():
    assert filament_list("4") == (4, [])
    count, named = filament_list("White,black,#2060C0")
    assert count is None and [name for name, _ in named] == ["white", "black", "#2060c0"]
    assert named[2][1] == (0x20, 0x60, 0xC0)
    for bad in ("1", "9", "white", "white,mauve", "#12345,black", ",".join(["red"] * 9)):
        with pytest.raises(ValueError, match="give a count"):
            filament_list(bad)


def test_four_colours_become_four_filaments_commonest_first():
    rgb = quadrant_photo()
    rgb[:, 48:] = QUADRANTS["black"]  # black now covers three eighths of the photo
    labels, colours, names = quantised(rgb, "4")
    assert len(colours) == 4 and names[0] == "near black"
    assert sorted(names) == sorted(f"near {name}" for name in QUADRANTS)
    for (rows, columns), name in zip(((slice(0, 24), slice(32, 48)), (slice(24, 48), slice(0, 32))), ("red", "blue")):
        assert len(np.unique(labels[rows, columns])) == 1
        assert names[labels[rows, columns][0, 0]] == f"near {name}"


def test_colours_are_matched_by_how_they_look():
    # A dark grey is nearer black than navy to the eye (CIELAB); in RGB it is nearer navy.
    grey, black, navy = np.array([60, 60, 60]), np.array([0, 0, 0]), np.array([27, 42, 110])
    assert np.linalg.norm(grey - navy) < np.linalg.norm(grey - black)
    labels, _, names = quantised(np.tile(grey.astype(np.uint8), (4, 4, 1)), "black,#1b2a6e")
    assert names == ("black", "#1b2a6e") and (labels == 0).all()
    assert np.linalg.norm(lab(grey) - lab(black)) < np.linalg.norm(lab(grey) - lab(navy))


def test_named_filaments_keep_their_slots_even_unused():
    labels, colours, names = quantised(quadrant_photo(), "yellow,white,red,blue,black")
    assert names == ("yellow", "white", "red", "blue", "black") and len(colours) == 5
    assert set(np.unique(labels)) == {1, 2, 3, 4}  # nothing is yellow; slot 1 stays yellow


def test_no_island_is_smaller_than_the_least_and_speckle_is_gone():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.random((200, 240)), (0, 0), 6.0)
    labels = ((smooth - smooth.min()) / np.ptp(smooth) * 12).astype(np.int64) % 4  # bands, some thin
    speckled = labels.copy()
    speckled[rng.random(labels.shape) < 0.03] = 3
    cell = (0.25, 0.25)
    clean = printable_labels(speckled, cell)
    least = int(np.ceil(MIN_ISLAND_MM**2 / (cell[0] * cell[1])))
    for label in np.unique(clean):
        _, _, stats, _ = cv2.connectedComponentsWithStats((clean == label).astype(np.uint8), connectivity=4)
        assert stats[1:, cv2.CC_STAT_AREA].min() >= least, label
    assert (clean == printable_labels(labels, cell)).mean() > 0.95  # the speckle left no trace


def test_a_colour_relief_paints_every_top_triangle_and_leaves_sides_and_base():
    solid = relief_print(box_depth(), quadrant_photo(), ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5,
                                                                    filaments="4"))
    assert check_mesh(solid).printable
    normals = solid.face_normals()
    top = normals[:, 2] > 1e-3
    assert (solid.paint.faces[top] >= 0).all() and (solid.paint.faces[~top] == -1).all()
    centre = solid.vertices[solid.faces].mean(axis=1)
    names = solid.paint.names
    for (x_sign, y_sign), name in zip(((-1, 1), (1, 1), (-1, -1), (1, -1)), QUADRANTS):
        quadrant = top & (np.sign(centre[:, 0]) == x_sign) & (np.sign(centre[:, 1]) == y_sign)
        quadrant &= (np.abs(centre[:, 0]) > 2) & (np.abs(centre[:, 1]) > 2)
        assert {names[f] for f in solid.paint.faces[quadrant]} == {f"near {name}"}


def test_the_painted_3mf_reads_back_triangle_for_triangle():
    spec = ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=5.0, filaments="white,red,blue,black", frame_mm=3.0,
                      hanger="keyhole")
    solid = relief_print(box_depth(), quadrant_photo(), spec)
    data = threemf_bytes(solid)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {"[Content_Types].xml", "_rels/.rels", "3D/3dmodel.model"} <= set(archive.namelist())
        model = archive.read("3D/3dmodel.model").decode()
    assert 'unit="millimeter"' in model and model.count("paint_color=") == model.count("slic3rpe:mmu_segmentation=")
    vertices, faces, filaments = read_painted_threemf(data)
    np.testing.assert_allclose(vertices, solid.vertices, atol=1e-5)
    np.testing.assert_array_equal(faces, solid.faces)
    np.testing.assert_array_equal(filaments, solid.paint.faces + 1)
    assert check_mesh(MeshData(vertices, faces, frame="print_mm")).printable
    top = solid.face_normals()[:, 2] > 1e-3
    assert set(np.unique(filaments[top])) == {1, 2, 3, 4} and (filaments[~top] == 0).all()


def test_a_colour_relief_needs_a_photo():
    with pytest.raises(MeshError, match="colours"):
        relief_print(box_depth(), None, ReliefSpec(filaments="4"))


def test_the_command_writes_a_painted_3mf_with_its_legend_and_refuses_colours_in_an_stl(tmp_path, capsys):
    from PIL import Image

    from ppd_core.mesh import main

    Image.fromarray(quadrant_photo()).save(tmp_path / "photo.png")
    np.save(tmp_path / "depth.npy", box_depth())
    common = [str(tmp_path / "photo.png"), "--depth", str(tmp_path / "depth.npy"), "--width-mm", "60",
              "--filaments", "black,white,red,blue"]
    assert main([*common, "--stl"]) == 1
    assert "STL has no colours: add --3mf" in capsys.readouterr().err
    assert not (tmp_path / "photo.stl").exists()
    assert main([*common, "--3mf", "--quiet"]) == 0
    out = capsys.readouterr().out
    size = (tmp_path / "photo.3mf").stat().st_size
    assert f"watertight yes, {size / 1e6:.1f} MB" in out
    legend = next(line for line in out.splitlines() if "filaments in slot order" in line)
    assert legend.index("1 #1c1c1c black") < legend.index("2 #f4f4f2 white") < legend.index("3 #c8202a red")
    _, _, filaments = read_painted_threemf((tmp_path / "photo.3mf").read_bytes())
    assert set(np.unique(filaments)) == {0, 1, 2, 3, 4}
