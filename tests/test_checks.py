"""The print check report: each defect is seen, and the one-line form says it."""

import numpy as np
import trimesh

from mesh.checks import check_mesh
from mesh.data import MeshData


def box(size=(10.0, 20.0, 5.0)):
    shape = trimesh.creation.box(extents=size)
    return MeshData(shape.vertices, shape.faces, frame="print_mm")


def test_closed_box_is_printable_with_its_volume_and_size():
    report = check_mesh(box())
    assert report.printable
    assert report.volume == np.float64(1000.0) or abs(report.volume - 1000.0) < 1e-6
    assert report.size == (10.0, 20.0, 5.0)
    line = report.summary()
    assert "10.00 x 20.00 x 5.00 mm" in line and "watertight yes" in line and "\n" not in line
    assert report.to_dict()["printable"] is True


def test_missing_face_flipped_face_and_degenerate_face_are_reported():
    mesh = box()
    open_box = MeshData(mesh.vertices, mesh.faces[1:])
    report = check_mesh(open_box)
    assert not report.watertight and not report.manifold and not report.printable
    assert "watertight NO" in report.summary() and "NOT PRINTABLE" in report.summary()

    flipped = MeshData(mesh.vertices, np.concatenate([mesh.faces[:1, ::-1], mesh.faces[1:]]))
    report = check_mesh(flipped)
    assert not report.winding_consistent and not report.printable

    sliver = MeshData(np.concatenate([mesh.vertices, [[0, 0, 0], [1, 0, 0], [2, 0, 0]]]),
                      np.concatenate([mesh.faces, [[8, 9, 10]]]))
    report = check_mesh(sliver)
    assert report.degenerate_faces == 1 and "degenerate faces 1" in report.summary()


def test_two_boxes_sharing_an_edge_are_not_manifold():
    first = trimesh.creation.box(extents=(1, 1, 1))
    second = trimesh.creation.box(extents=(1, 1, 1))
    second.apply_translation((1, 1, 0))  # touches the first along one edge only
    joined = trimesh.util.concatenate([first, second])
    joined.merge_vertices()
    report = check_mesh(MeshData(joined.vertices, joined.faces))
    assert not report.manifold


def test_empty_mesh_is_not_printable():
    report = check_mesh(MeshData(np.zeros((0, 3)), np.zeros((0, 3))))
    assert not report.printable and report.faces == 0
