"""The add-on's importer: NPZ result -> mesh / points / solid, material, camera (bpy 5.0)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from ppd_core.errors import BadInputError

from tests.blender_harness import (
    REPO,
    WORKER_PYTHON,
    addon,
    bpy,
    datablock_counts,
    grid_result,
    projected_pixels,
    render_through_camera,
    worker_env,
    write_photo,
    write_result_npz,
)


def test_mesh_import_counts_uvs_material_and_camera(importer, tmp_path):
    arrays = grid_result(width=40, height=30, fx=50.0, cx=21.5, cy=13.0)
    photo = write_photo(tmp_path / "garden.png", 40, 30)
    npz = write_result_npz(tmp_path / "r.npz", arrays, image_path=photo)
    scene = bpy.context.scene

    result = importer.import_result(scene, str(npz), name="garden")

    mesh_obj, camera = result.objects[0], result.camera
    assert result.collection.name == "garden" and mesh_obj.name == "garden"
    assert mesh_obj.users_collection[0] == result.collection and camera.name == "garden camera"
    mesh = mesh_obj.data
    assert len(mesh.vertices) == 40 * 30 and len(mesh.polygons) == len(arrays["faces"])
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uv)
    assert 0.0 <= uv.min() and uv.max() <= 1.0
    loop_vertices = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    first = int(np.flatnonzero(loop_vertices == 41)[0])
    np.testing.assert_allclose(uv.reshape(-1, 2)[first], arrays["uvs"][41], atol=1e-6)

    material = mesh.materials[0]
    texture = next(node for node in material.node_tree.nodes if node.type == "TEX_IMAGE")
    assert bpy.path.abspath(texture.image.filepath) == str(photo)
    assert any(node.type == "EMISSION" for node in material.node_tree.nodes)

    data = camera.data
    assert (scene.render.resolution_x, scene.render.resolution_y) == (40, 30)
    assert data.sensor_fit == "HORIZONTAL" and data.sensor_width == pytest.approx(36.0)
    assert data.lens == pytest.approx(50.0 * 36.0 / 40.0)
    assert data.shift_x == pytest.approx((20 - 21.5) / 40) and data.shift_y == pytest.approx((13.0 - 15) / 40)
    assert data.background_images[0].image == texture.image and scene.camera == camera


def test_vertices_project_onto_their_pixels(importer, tmp_path):
    arrays = grid_result(width=64, height=48, fx=55.0, cx=30.25, cy=26.5, seed=3)
    npz = write_result_npz(tmp_path / "r.npz", arrays)
    scene = bpy.context.scene
    result = importer.import_result(scene, str(npz), name="p")

    indices = [0, 63, 47 * 64, 64 * 48 - 1, 10 * 64 + 33, 25 * 64 + 5]
    got = projected_pixels(scene, result.camera, result.objects[0], indices)
    want = np.array([(i % 64 + 0.5, i // 64 + 0.5) for i in indices])
    assert np.abs(got - want).max() < 0.5
    assert np.abs(got - want).max() < 1e-3  # in fact exact up to float32 rounding


def test_faces_face_the_camera(importer, tmp_path):
    npz = write_result_npz(tmp_path / "r.npz", grid_result(depth=2.0))
    obj = importer.import_result(bpy.context.scene, str(npz), name="wall").objects[0]
    normals = np.empty(len(obj.data.polygons) * 3, np.float32)
    obj.data.polygons.foreach_get("normal", normals)
    # The camera looks down -Z from the origin: a wall facing it has normals along +Z.
    assert (normals.reshape(-1, 3)[:, 2] > 0.999).all()


def test_blender_camera_of_ppd_core_lines_up_in_blender(importer, tmp_path):
    arrays = grid_result(width=50, height=36, fx=61.0, cx=27.0, cy=16.5, seed=5)
    write_result_npz(tmp_path / "r.npz", arrays, image_path=tmp_path / "x.png")  # the product's writer and camera
    scene = bpy.context.scene
    result = importer.import_result(scene, str(tmp_path / "r.npz"), name="core")

    indices = [0, 49, 35 * 50, 50 * 36 - 1, 17 * 50 + 20]
    got = projected_pixels(scene, result.camera, result.objects[0], indices)
    want = np.array([(i % 50 + 0.5, i // 50 + 0.5) for i in indices])
    assert np.abs(got - want).max() < 0.5


def test_point_cloud_has_colours_and_mesh_to_points(importer, tmp_path):
    arrays = grid_result(width=20, height=10)
    npz = write_result_npz(tmp_path / "r.npz", arrays, kind="points")
    result = importer.import_result(bpy.context.scene, str(npz), name="cloud", shading="PRINCIPLED")

    obj = result.objects[0]
    assert obj.name == "cloud points" and len(obj.data.vertices) == 200 and len(obj.data.polygons) == 0
    colors = np.empty(200 * 4, np.float32)
    obj.data.color_attributes["Col"].data.foreach_get("color_srgb", colors)
    np.testing.assert_allclose(colors.reshape(-1, 4)[:, :3] * 255, arrays["colors"], atol=0.6)
    modifier = obj.modifiers["Mesh to Points"]
    assert any(node.bl_idname == "GeometryNodeMeshToPoints" for node in modifier.node_group.nodes)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    rendered = [len(instance.object.data.points) for instance in depsgraph.object_instances
                if instance.object.original == obj and instance.object.type == "POINTCLOUD"]
    assert rendered == [200]


def test_print_solid_comes_in_at_its_true_size_and_leaves_the_scene_units_alone(importer, tmp_path):
    arrays = grid_result(width=8, height=6)
    arrays["vertices"] = arrays["vertices"] * 1000.0
    npz = write_result_npz(tmp_path / "s.npz", arrays, kind="solid")
    scene = bpy.context.scene
    units = (scene.unit_settings.system, scene.unit_settings.scale_length, scene.unit_settings.length_unit)
    result = importer.import_result(scene, str(npz), name="relief")
    obj = result.objects[0]
    assert obj.name == "relief solid" and result.camera is None
    assert (scene.unit_settings.system, scene.unit_settings.scale_length, scene.unit_settings.length_unit) == units
    np.testing.assert_allclose(np.array(obj.data.vertices[7].co), arrays["vertices"][7], rtol=1e-6)  # millimetres
    bpy.context.view_layer.update()
    world = obj.matrix_world @ obj.data.vertices[7].co
    np.testing.assert_allclose(np.array(world), arrays["vertices"][7] / 1000.0, rtol=1e-5)  # metres in the scene
    mesh = write_result_npz(tmp_path / "m.npz", grid_result(width=6, height=4))
    later = importer.import_result(scene, str(mesh), name="later").objects[0]
    assert tuple(later.scale) == (1.0, 1.0, 1.0)  # later imports keep their own scale


def test_bad_npz_leaves_nothing_behind(importer, tmp_path):
    bad = write_result_npz(tmp_path / "bad.npz", grid_result(width=8, height=6))
    with np.load(bad) as data:
        arrays = dict(data)
    arrays["faces"][3, 1] = 10_000
    np.savez(bad, **arrays)
    before = datablock_counts()
    with pytest.raises(BadInputError, match="bad.npz: faces index vertices outside"):
        importer.import_result(bpy.context.scene, str(bad), name="bad")
    with pytest.raises(BadInputError, match="missing.npz: result file not found"):
        importer.import_result(bpy.context.scene, str(tmp_path / "missing.npz"), name="bad")
    assert datablock_counts() == before


def test_failure_midway_removes_created_datablocks(importer, tmp_path, monkeypatch):
    """A failure after the mesh, its material and the photo image exist: everything goes."""
    photo = write_photo(tmp_path / "fine.png", 8, 6)
    npz = write_result_npz(tmp_path / "r.npz", grid_result(width=8, height=6), image_path=photo)
    materials = addon("scene.materials")
    real = materials.photo_material

    def then_fail(*args, **kwargs):
        real(*args, **kwargs)  # made, and then the import fails
        raise RuntimeError("out of memory")

    monkeypatch.setattr(materials, "photo_material", then_fail)
    before = datablock_counts()
    with pytest.raises(RuntimeError, match="out of memory"):
        importer.import_result(bpy.context.scene, str(npz), name="x")
    assert datablock_counts() == before


def test_a_photo_blender_cannot_read_falls_back_to_vertex_colours(importer, tmp_path):
    """The worker reads photos Blender cannot (HEIC): the finished mesh is kept, coloured by
    its vertex colours, with a warning, and the unreadable image is not left behind."""
    photo = tmp_path / "IMG_0001.heic"
    photo.write_bytes(b"not an image Blender reads" * 8)
    npz = write_result_npz(tmp_path / "r.npz", grid_result(width=8, height=6), image_path=photo)
    images_before = len(bpy.data.images)
    result = importer.import_result(bpy.context.scene, str(npz), name="IMG_0001")
    nodes = result.objects[0].data.materials[0].node_tree.nodes
    assert any(node.type == "ATTRIBUTE" and node.attribute_name == "Col" for node in nodes)
    assert result.warnings == ["Blender cannot read IMG_0001.heic as a texture: the mesh shows its vertex colours"]
    assert len(bpy.data.images) == images_before and not result.camera.data.background_images


@pytest.mark.parametrize("fov", [40.0, 75.0])
def test_pipeline_npz_lines_up_with_the_photo_through_the_camera(importer, tmp_path, fov):
    """The pipeline (camera, lift, grid mesh, NPZ export, run by the CLI in the worker's
    Python) -> importer -> Blender camera: every vertex seen through the camera lands on the
    photo pixel its UV names."""
    width, height = 64, 48
    photo = write_photo(tmp_path / "box.png", width, height, seed=2)
    depth = np.full((height, width), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    np.save(tmp_path / "depth.npy", depth)
    command = [WORKER_PYTHON, "-m", "ppd_core.mesh", str(photo), "--depth", str(tmp_path / "depth.npy"),
               "--fov", str(fov), "--resolution", str(width * height), "--npz", "-o", str(tmp_path / "box.npz")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=worker_env(), check=False)
    assert done.returncode == 0, done.stderr

    scene = bpy.context.scene
    result = importer.import_result(scene, str(tmp_path / "box.npz"), name="box")
    obj = result.objects[0]
    assert (scene.render.resolution_x, scene.render.resolution_y) == (width, height)
    mesh = obj.data
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uv)
    picks = np.linspace(0, len(loops) - 1, 9).astype(int)
    want = np.stack([uv[2 * picks] * width, (1.0 - uv[2 * picks + 1]) * height], 1)
    got = projected_pixels(scene, result.camera, obj, loops[picks])
    assert np.abs(got - want).max() < 0.5


def _photo_pixels(path) -> np.ndarray:
    """The photo's sRGB values as (height, width, 3) floats, top row first."""
    image = bpy.data.images.load(str(path), check_existing=True)
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height, width, 4)[::-1, :, :3]


def test_emission_mesh_renders_the_photo_pixel_for_pixel(importer, tmp_path):
    """Through the imported camera the textured mesh reproduces the photo: any offset of
    half a pixel or a wrong texture/material would change most pixels of a random photo."""
    width, height = 40, 30
    photo = write_photo(tmp_path / "wall.png", width, height, seed=7)
    arrays = grid_result(width=width, height=height, fx=45.0, cx=19.0, cy=16.5, depth=2.0)
    scene = bpy.context.scene
    result = importer.import_result(scene, str(write_result_npz(tmp_path / "r.npz", arrays, image_path=photo)),
                                    name="wall")
    texture = next(n for n in result.objects[0].data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    texture.interpolation = "Closest"  # any sample inside a pixel then reads that pixel's texel

    rendered = render_through_camera(scene, tmp_path / "render.png")
    want = _photo_pixels(photo)
    # The grid's vertices sit on pixel centres, so the outermost half-pixel ring is background.
    assert rendered.shape == want.shape
    assert np.abs(rendered - want)[1:-1, 1:-1].max() < 2.5 / 255


def test_point_cloud_renders_its_colours(importer, tmp_path):
    """The Geometry Nodes points carry the colour attribute the material reads: rendered
    through the camera, each pixel shows its point's colour (black if the name were wrong)."""
    width, height = 32, 24
    arrays = grid_result(width=width, height=height, fx=40.0, cx=16.0, cy=12.0, depth=2.0)
    blocks = np.random.default_rng(4).integers(40, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    arrays["colors"] = np.repeat(np.repeat(blocks, 4, 0), 4, 1).reshape(-1, 3)
    scene = bpy.context.scene
    result = importer.import_result(scene, str(write_result_npz(tmp_path / "p.npz", arrays, kind="points")),
                                    name="dots")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    clouds = [i.object.data for i in depsgraph.object_instances
              if i.object.original == result.objects[0] and i.object.type == "POINTCLOUD"]
    assert len(clouds) == 1 and "Col" in clouds[0].attributes  # the modifier passes it on
    assert clouds[0].materials[0].name == "dots points"
    rendered = render_through_camera(scene, tmp_path / "points.png")
    want = arrays["colors"].reshape(height, width, 3) / 255.0
    inner = np.zeros((height, width), bool)  # block interiors: neighbours share the colour
    inner[1::4, 1::4] = inner[1::4, 2::4] = inner[2::4, 1::4] = inner[2::4, 2::4] = True
    assert np.median(np.abs(rendered - want)[inner]) < 3 / 255
    assert np.abs(rendered - want)[inner].mean() < 0.05


def test_odd_photo_names_and_repeated_imports_never_clobber(importer, tmp_path):
    photo = write_photo(tmp_path / "IMG.2024.01.05 final.png", 6, 4)
    npz = write_result_npz(tmp_path / "r.npz", grid_result(width=6, height=4), image_path=photo)
    points = write_result_npz(tmp_path / "p.npz", grid_result(width=6, height=4), kind="points")
    scene = bpy.context.scene
    long_name = "Ünïcødé 写真 " * 10  # 150+ bytes: Blender 4.x cuts names at 63
    first = importer.import_result(scene, str(npz), name=long_name)
    base = first.collection.name
    assert len(base.encode()) <= importer.NAME_BYTES and long_name.startswith(base)
    assert first.objects[0].name == base and first.camera.name == f"{base} camera"

    dotted = [importer.import_result(scene, str(npz), name="IMG.2024.01.05 final") for _ in range(2)]
    assert dotted[0].collection.name == "IMG.2024.01.05 final"
    assert dotted[1].collection.name != dotted[0].collection.name
    assert dotted[0].objects[0].data.vertices[0].co == dotted[1].objects[0].data.vertices[0].co
    clouds = [importer.import_result(scene, str(points), name="IMG.2024.01.05 final") for _ in range(2)]
    names = [o.name for r in (*dotted, *clouds) for o in r.objects]
    assert len(set(names)) == len(names)  # every object keeps its own name
    assert len(dotted[0].collection.objects) == 2  # the first import was not touched
    groups = [r.objects[0].modifiers["Mesh to Points"].node_group for r in clouds]
    assert groups[0] != groups[1] and all(g.name in bpy.data.node_groups for g in groups)
    assert groups[0].nodes["Set Material"].inputs["Material"].default_value.name == "IMG.2024.01.05 final points"
    assert len({r.objects[0].data.materials[0].name for r in dotted}) == 2
    assert [bpy.path.abspath(i.filepath) for i in bpy.data.images] == [str(photo)]  # loaded once, shared


def test_mesh_keeps_its_true_size_in_a_millimetre_scene(importer, tmp_path):
    """In a scene the user set to millimetres, a metric mesh still measures in metres (scaled
    object) and still lines up with its pixels through the camera."""
    scene = bpy.context.scene
    scene.unit_settings.system, scene.unit_settings.scale_length = "METRIC", 0.001
    scene.unit_settings.length_unit = "MILLIMETERS"
    arrays = grid_result(width=32, height=24, fx=40.0, cx=15.0, cy=12.5, seed=9)
    result = importer.import_result(scene, str(write_result_npz(tmp_path / "r.npz", arrays)), name="room")
    obj = result.objects[0]
    bpy.context.view_layer.update()
    assert tuple(obj.scale) == pytest.approx((1000.0,) * 3)
    world_z = -(obj.matrix_world @ obj.data.vertices[5].co).z * scene.unit_settings.scale_length
    assert world_z == pytest.approx(float(arrays["vertices"][5, 2]), rel=1e-5)  # metres
    assert result.camera.data.clip_end > 1000.0 * float(arrays["vertices"][:, 2].max())
    indices = [0, 31, 23 * 32, 32 * 24 - 1, 100]
    got = projected_pixels(scene, result.camera, obj, indices)
    want = np.array([(i % 32 + 0.5, i // 32 + 0.5) for i in indices])
    assert np.abs(got - want).max() < 1e-3
    scene.unit_settings.scale_length, scene.unit_settings.length_unit = 1.0, "METERS"


def test_imports_never_change_units_and_become_the_selection(importer, tmp_path):
    scene = bpy.context.scene
    scene.unit_settings.system, scene.unit_settings.scale_length = "METRIC", 1.0
    scene.unit_settings.length_unit = "METERS"
    other = bpy.data.objects.new("other", None)
    scene.collection.objects.link(other)
    other.select_set(True)
    view_layer = bpy.context.view_layer
    for kind in ("mesh", "points", "solid"):
        npz = write_result_npz(tmp_path / f"{kind}.npz", grid_result(width=6, height=4), kind=kind)
        result = importer.import_result(scene, str(npz), name=kind, view_layer=view_layer)
        assert scene.unit_settings.length_unit == "METERS" and scene.unit_settings.scale_length == 1.0
        assert view_layer.objects.active == result.objects[0]
        assert {o.name for o in bpy.context.selected_objects} == {o.name for o in result.objects}
    assert not other.select_get()
    bpy.data.objects.remove(other)


def test_camera_values_missing_is_a_clear_error(importer, tmp_path):
    arrays = grid_result(width=6, height=4)
    path = write_result_npz(tmp_path / "r.npz", arrays)
    with np.load(path) as data:
        kept = {key: data[key] for key in data.files if key != "camera_shift"}
    np.savez(tmp_path / "nocam.npz", **kept)
    before = datablock_counts()
    with pytest.raises(BadInputError, match="nocam.npz: missing key 'camera_shift'"):
        importer.import_result(bpy.context.scene, str(tmp_path / "nocam.npz"), name="x")
    assert datablock_counts() == before


def test_points_failing_at_the_camera_remove_node_group_and_material(importer, tmp_path, monkeypatch):
    camera = addon("scene.camera")

    def broken(*args, **kwargs):
        raise RuntimeError("camera could not be made")

    monkeypatch.setattr(camera, "create_camera", broken)
    npz = write_result_npz(tmp_path / "p.npz", grid_result(width=6, height=4), kind="points")
    before = datablock_counts()
    with pytest.raises(RuntimeError, match="camera could not be made"):
        importer.import_result(bpy.context.scene, str(npz), name="gone")
    assert datablock_counts() == before


def test_failed_import_puts_the_scene_settings_back(importer, tmp_path, monkeypatch):
    """A solid that fails after switching units, and a mesh that fails after making its
    camera, leave units, render size and the scene camera as they were."""
    scene = bpy.context.scene
    scene.unit_settings.system, scene.unit_settings.scale_length = "METRIC", 1.0
    scene.unit_settings.length_unit = "CENTIMETERS"
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    own_camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(own_camera)
    scene.camera = own_camera
    before = datablock_counts()

    def broken(*args, **kwargs):
        raise RuntimeError("failed late")

    materials = addon("scene.materials")
    monkeypatch.setattr(materials, "color_attribute_material", broken)
    solid = write_result_npz(tmp_path / "s.npz", grid_result(width=6, height=4), kind="solid")
    with pytest.raises(RuntimeError, match="failed late"):
        importer.import_result(scene, str(solid), name="relief")
    monkeypatch.setattr(importer, "select_only", broken)
    mesh = write_result_npz(tmp_path / "m.npz", grid_result(width=6, height=4))
    with pytest.raises(RuntimeError, match="failed late"):
        importer.import_result(scene, str(mesh), name="room", view_layer=bpy.context.view_layer)

    assert (scene.unit_settings.length_unit, scene.unit_settings.scale_length) == ("CENTIMETERS", 1.0)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (1920, 1080)
    assert scene.camera == own_camera and datablock_counts() == before
    scene.unit_settings.length_unit = "METERS"


def test_portrait_photo_lines_up_too(importer, tmp_path):
    """Sensor fit HORIZONTAL and shifts in units of the width hold for portrait photos."""
    arrays = grid_result(width=30, height=44, fx=40.0, cx=13.0, cy=25.5, seed=12)
    scene = bpy.context.scene
    result = importer.import_result(scene, str(write_result_npz(tmp_path / "r.npz", arrays)), name="tall")
    indices = [0, 29, 43 * 30, 30 * 44 - 1, 20 * 30 + 7]
    got = projected_pixels(scene, result.camera, result.objects[0], indices)
    want = np.array([(i % 30 + 0.5, i // 30 + 0.5) for i in indices])
    assert (scene.render.resolution_x, scene.render.resolution_y) == (30, 44)
    assert np.abs(got - want).max() < 1e-3
