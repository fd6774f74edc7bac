"""Decimation to a target triangle count or ratio by quadric edge collapse (pymeshlab).

pymeshlab keeps vertex colours and texture coordinates through the collapse and weights
boundary edges so that silhouettes and depth-edge cuts stay in place.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mesh.data import MeshData, MeshError


def target_face_count(face_count: int, target_faces: Optional[int] = None,
                      ratio: Optional[float] = None) -> int:
    """The triangle count asked for by exactly one of `target_faces` or `ratio` (0 < ratio <= 1)."""
    if (target_faces is None) == (ratio is None):
        raise MeshError("decimation needs exactly one of a target triangle count or a ratio")
    if ratio is not None:
        if not 0.0 < ratio <= 1.0:
            raise MeshError(f"decimation ratio must be in (0, 1], got {ratio}")
        return max(1, int(round(face_count * ratio)))
    if target_faces < 1:
        raise MeshError(f"decimation target must be at least 1 triangle, got {target_faces}")
    return int(target_faces)


def _pymeshlab_decimate(mesh: MeshData, target: int) -> MeshData:
    import pymeshlab  # heavy (~2 s to load): imported on first use

    extras = {}
    if mesh.colors is not None:
        extras["v_color_matrix"] = np.column_stack([mesh.colors / 255.0, np.ones(len(mesh.colors))])
    if mesh.uvs is not None:
        extras["v_tex_coords_matrix"] = mesh.uvs.astype(np.float64)
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(vertex_matrix=mesh.vertices.astype(np.float64),
                                   face_matrix=mesh.faces, **extras))
    options = dict(targetfacenum=target, boundaryweight=2.0, preservenormal=True,
                   optimalplacement=True, planarquadric=True)
    if mesh.uvs is not None:
        # The texture-aware collapse works on per-corner (wedge) coordinates.
        meshes.compute_texcoord_transfer_vertex_to_wedge()
    # Boundaries are kept first; if that blocks the collapse short of the target (small
    # targets on meshes with many cuts), a second pass only weights them.
    for preserve in (True, False):
        if mesh.uvs is not None:
            meshes.meshing_decimation_quadric_edge_collapse_with_texture(preserveboundary=preserve, **options)
        else:
            meshes.meshing_decimation_quadric_edge_collapse(preserveboundary=preserve, autoclean=True, **options)
        if meshes.current_mesh().face_number() <= target * 1.02:
            break
    if mesh.uvs is not None:
        meshes.compute_texcoord_transfer_wedge_to_vertex()
    result = meshes.current_mesh()
    decimated = MeshData(vertices=result.vertex_matrix(), faces=result.face_matrix(), frame=mesh.frame)
    if mesh.colors is not None:
        decimated.colors = np.clip(np.rint(result.vertex_color_matrix()[:, :3] * 255), 0, 255).astype(np.uint8)
    if mesh.uvs is not None:
        decimated.uvs = result.vertex_tex_coord_matrix().astype(np.float32)
    if mesh.normals is not None:
        meshes.compute_normal_per_vertex()
        decimated.normals = meshes.current_mesh().vertex_normal_matrix().astype(np.float32)
    return decimated


def decimate(mesh: MeshData, target_faces: Optional[int] = None, ratio: Optional[float] = None) -> MeshData:
    """The mesh reduced to about `target_faces` triangles (or `ratio` of its triangles).

    A target at or above the current count returns the mesh unchanged.
    """
    target = target_face_count(len(mesh.faces), target_faces, ratio)
    if mesh.is_points or target >= len(mesh.faces):
        return mesh
    return _pymeshlab_decimate(mesh, target)


def decimate_solid(solid: MeshData, target_faces: int) -> MeshData:
    """A closed print solid reduced to about `target_faces` triangles, still closed and manifold.

    Quadric edge collapse that keeps the topology: each collapse costs the squared distance
    it moves the surface, so flat areas merge into large triangles first and a relief's depth
    steps, which cost the most, keep theirs. Planar quadrics hold vertices on the flat sides
    and base, so the size in millimetres stays exact. Returns the solid unchanged when it
    already has no more triangles than asked."""
    import pymeshlab  # heavy (~2 s to load): imported on first use

    target = target_face_count(len(solid.faces), target_faces)
    if target >= len(solid.faces):
        return solid
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(vertex_matrix=solid.vertices.astype(np.float64), face_matrix=solid.faces))
    meshes.meshing_decimation_quadric_edge_collapse(targetfacenum=target, preservetopology=True, preservenormal=True,
                                                    optimalplacement=True, planarquadric=True, autoclean=True)
    result = meshes.current_mesh()
    return MeshData(vertices=result.vertex_matrix(), faces=result.face_matrix(), frame=solid.frame)
