"""The options table is the one definition: the command's flags, JobOptions and the add-on agree."""

import dataclasses
import math

import numpy as np
import pytest

from ppd_core.errors import BadInputError
from ppd_core.mesh import build_parser
from ppd_core.options import DEVICES, OPTIONS, OUTPUT_KINDS, PRECISIONS, SEMANTICS, JobOptions, check_option, output_files


def test_every_option_is_a_flag_with_the_fields_default_type_and_choices():
    actions = {action.dest: action for action in build_parser()._actions}
    defaults = JobOptions()
    for name, row in OPTIONS.items():
        action = actions[name]
        assert row.flag in action.option_strings
        assert action.default == getattr(defaults, name) == row.default
        if row.kind is not bool:
            assert action.type is row.kind and tuple(action.choices or ()) == row.spec.choices
    assert {f.name for f in dataclasses.fields(JobOptions)} == set(OPTIONS)


def test_every_output_kind_is_a_flag():
    flags = {flag for action in build_parser()._actions for flag in action.option_strings}
    assert {kind.flag for kind in OUTPUT_KINDS.values()} <= flags


@pytest.mark.parametrize("name", [name for name, row in OPTIONS.items() if row.spec.minimum is not None])
def test_limits_are_inclusive_and_refused_one_step_beyond(name):
    row = OPTIONS[name]
    check_option(name, row.kind(row.spec.minimum))
    below = row.spec.minimum - 1 if row.kind is int else math.nextafter(row.spec.minimum, -math.inf)
    with pytest.raises(BadInputError, match="must be"):
        check_option(name, below)
    if row.spec.maximum is not None:
        check_option(name, row.kind(row.spec.maximum))
        above = row.spec.maximum + 1 if row.kind is int else math.nextafter(row.spec.maximum, math.inf)
        with pytest.raises(BadInputError, match="must be"):
            check_option(name, above)


def test_values_arriving_as_json_are_type_checked_by_the_table():
    with pytest.raises(BadInputError, match="option steps must be a whole number"):
        JobOptions.from_dict({"steps": 2.5})
    with pytest.raises(BadInputError, match="option points must be true or false"):
        JobOptions.from_dict({"points": 1})
    with pytest.raises(BadInputError, match="unknown job option"):
        JobOptions.from_dict({"depth": "old name"})
    with pytest.raises(BadInputError, match="device 'gpu' is not valid"):
        JobOptions.from_dict({"device": "gpu"})
    assert JobOptions.from_dict({"device": "cuda:1", "seed": np.int64(3)}).seed == 3


def test_each_output_kind_names_its_files():
    from pathlib import Path

    assert output_files("obj", Path("/a/my photo.obj")) == [
        Path("/a/my photo.obj"), Path("/a/my_photo.mtl"), Path("/a/my_photo_texture.png")]
    assert output_files("depth_png", Path("/a/p_depth.png"))[1] == Path("/a/p_depth_preview.png")
    assert all(output_files(kind, Path("/a/x" + k.suffix))[0].suffix == k.extension for kind, k in OUTPUT_KINDS.items())


def test_the_addon_properties_take_their_defaults_and_limits_from_the_table():
    from tests.blender_harness import addon, bpy

    addon()
    settings = bpy.types.Scene.bl_rna.properties["depth_from_image"].fixed_type
    checked = []
    for prop in settings.properties:
        if prop.identifier not in OPTIONS or prop.type not in ("FLOAT", "INT"):
            continue
        row = OPTIONS[prop.identifier]
        if row.default is not None:
            assert prop.default == pytest.approx(row.default, rel=1e-6), prop.identifier
        low = row.spec.minimum if row.spec.minimum is not None else -math.inf
        high = row.spec.maximum if row.spec.maximum is not None else math.inf
        # float32 (FloatProperty) and int32 (IntProperty) may hold a narrower range, never a wider one
        assert low <= prop.hard_min and prop.hard_max <= high, prop.identifier
        assert prop.hard_min == pytest.approx(max(low, -2**31), rel=1e-6), prop.identifier
        assert prop.hard_max == pytest.approx(min(high, 2**31 - 1), rel=1e-6), prop.identifier
        checked.append(prop.identifier)
    assert {"width_mm", "relief_mm", "base_mm", "steps", "near", "far", "fov", "edge_strength", "seed"} <= set(checked)
    for resolution in addon("properties").RESOLUTIONS.values():
        check_option("resolution", resolution)
    prefs = bpy.context.preferences.addons["bl_ext.user_default.depth_from_image"].preferences
    for name, choices in (("device", DEVICES), ("precision", PRECISIONS), ("semantics", SEMANTICS)):
        items = {item.identifier for item in type(prefs).bl_rna.properties[name].enum_items}
        assert items == set(choices)
        assert type(prefs).bl_rna.properties[name].default == OPTIONS[name].default


def test_a_saved_result_keeps_its_scale_and_says_so_when_given_another():
    JobOptions(depth_file="photo.npz").validate()
    for given in ({"preset": "indoor"}, {"near": 1.0}, {"scale_from": "range"}):
        with pytest.raises(BadInputError, match="keeps its own scale"):
            JobOptions(depth_file="photo.NPZ", **given).validate()
    JobOptions(depth_file="photo.npy", preset="indoor").validate()  # a plain depth map takes a range


def test_the_files_a_job_reads_are_the_photo_the_depth_file_and_the_reference():
    inputs = JobOptions(depth_file="d.npy", depth_kind="normalized", align_to="lidar.png").input_files("p.jpg")
    assert {str(path): what for path, what in inputs.items()} == {
        "p.jpg": "the photo itself", "d.npy": "the depth file", "lidar.png": "the metric reference (--align-to)"}
