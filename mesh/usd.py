"""USD (usd-core) of a mesh or point cloud, and the stage that plays a clip's frames as one object.

A frame is a binary USD layer (`.usdc`) in glTF's frame (metres, y up, the camera at the origin
looking down -z): a `Mesh` of triangles, or `Points`, under `/depth/surface`, with its UVs
(`primvars:st`), colours (`primvars:displayColor`) and normals, each held as a time sample at
0. A clip's stage (`clip_stage_files`) holds no geometry: it names every frame's file as a
value clip, active from that frame's time on, so that a reader streams each frame from its
own file when it is shown. Blender's USD importer makes of it one object whose Mesh Sequence
Cache reads the frames as the timeline moves, however their topology changes; every file is
written as the frame finishes, so neither the writer nor Blender ever holds the whole clip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from mesh.data import MeshData, MeshError
from mesh.export import gltf_frame

ROOT, SURFACE = "/depth", "/depth/surface"
FRAME_TIME = 0.0  # every frame file's values sit at this time; the clip's stage maps its frames onto it


def _define(stage, scene: MeshData):
    """The surface prim of `scene` (glTF frame) on `stage`, its values at FRAME_TIME."""
    from pxr import Sdf, UsdGeom, Vt

    if scene.is_points:
        prim = UsdGeom.Points.Define(stage, SURFACE)
        spacing = np.median(np.abs(scene.vertices[:, 2])) * 2e-3 if len(scene.vertices) else 1e-3
        prim.GetWidthsAttr().Set(Vt.FloatArray.FromNumpy(np.full(len(scene.vertices), spacing, np.float32)),
                                 FRAME_TIME)
        prim.SetWidthsInterpolation(UsdGeom.Tokens.constant)
    else:
        prim = UsdGeom.Mesh.Define(stage, SURFACE)
        prim.GetSubdivisionSchemeAttr().Set(UsdGeom.Tokens.none)  # triangles as they are, not a limit surface
        counts = np.full(len(scene.faces), 3, np.int32)
        prim.GetFaceVertexCountsAttr().Set(Vt.IntArray.FromNumpy(counts), FRAME_TIME)
        prim.GetFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(scene.faces.astype(np.int32).ravel()), FRAME_TIME)
    prim.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(scene.vertices.astype(np.float32)), FRAME_TIME)
    primvars = UsdGeom.PrimvarsAPI(prim)
    if scene.uvs is not None and not scene.is_points:
        primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex).Set(
            Vt.Vec2fArray.FromNumpy(scene.uvs.astype(np.float32)), FRAME_TIME)
    if scene.colors is not None:
        colours = (scene.colors.astype(np.float32) / 255.0) ** 2.2  # USD colours are linear
        prim.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex).Set(Vt.Vec3fArray.FromNumpy(colours), FRAME_TIME)
    if scene.normals is not None:
        prim.GetNormalsAttr().Set(Vt.Vec3fArray.FromNumpy(scene.normals.astype(np.float32)), FRAME_TIME)
        prim.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    return prim


def _new_stage(path: Path):
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, ROOT).GetPrim())
    return stage


def usd_bytes(mesh: MeshData) -> bytes:
    """A binary USD of the mesh or point cloud (glTF frame), its values at FRAME_TIME."""
    scene = gltf_frame(mesh)
    if len(scene.vertices) == 0:
        raise MeshError("nothing to write: the mesh has no vertices")
    with tempfile.TemporaryDirectory(prefix="ppd-usd-") as folder:
        path = Path(folder) / "frame.usdc"  # usd-core writes crate files only to a path
        stage = _new_stage(path)
        stage.SetStartTimeCode(FRAME_TIME)
        stage.SetEndTimeCode(FRAME_TIME)
        _define(stage, scene)
        stage.GetRootLayer().Save()
        del stage
        return path.read_bytes()


def clip_stage_files(frames: Sequence[tuple[float, str]], first_frame: Path, fps: float,
                     manifest_name: str) -> tuple[bytes, bytes]:
    """(the clip's stage, its clip manifest) as USDA text: `frames` are (time code, the frame file's
    path relative to the stage), in order; `first_frame` is one frame's file, which says what
    the frames hold; the stage finds its manifest as `manifest_name` beside it."""
    from pxr import Sdf, Usd

    layer = Sdf.Layer.FindOrOpen(str(first_frame))
    if layer is None:
        raise MeshError(f"{first_frame}: not a USD file")
    manifest = Usd.ClipsAPI.GenerateClipManifestFromLayers([layer], Sdf.Path(SURFACE))
    frame_stage = Usd.Stage.Open(layer)
    surface = frame_stage.GetPrimAtPath(SURFACE)
    with tempfile.TemporaryDirectory(prefix="ppd-usd-") as folder:
        stage = _new_stage(Path(folder) / "clip.usda")
        times = [time for time, _ in frames]
        stage.SetStartTimeCode(times[0])
        stage.SetEndTimeCode(times[-1])
        stage.SetTimeCodesPerSecond(fps)
        stage.SetFramesPerSecond(fps)
        prim = stage.DefinePrim(SURFACE, surface.GetTypeName())
        for attribute in surface.GetAuthoredAttributes():  # declared here, valued by the clips
            declared = prim.CreateAttribute(attribute.GetName(), attribute.GetTypeName())
            for key in ("interpolation",):
                if attribute.HasMetadata(key):
                    declared.SetMetadata(key, attribute.GetMetadata(key))
            value = attribute.Get(Usd.TimeCode.Default())  # a setting (subdivision), not a frame's data
            if value is not None:
                declared.Set(value)
        clips = Usd.ClipsAPI(prim)
        clips.SetClipAssetPaths([Sdf.AssetPath(path) for _, path in frames])
        clips.SetClipPrimPath(SURFACE)
        clips.SetClipActive([(time, index) for index, time in enumerate(times)])
        clips.SetClipTimes([(time, FRAME_TIME) for time in times])
        clips.SetClipManifestAssetPath(Sdf.AssetPath(f"./{manifest_name}"))
        return stage.GetRootLayer().ExportToString().encode(), manifest.ExportToString().encode()
