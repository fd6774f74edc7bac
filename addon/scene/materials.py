"""Materials and the Geometry Nodes group that show an imported photo result.

`shading` is "EMISSION" (the photo's colours as they are, unaffected by scene lights: best
for a backdrop seen through the photo's camera) or "PRINCIPLED" (a lit surface whose base
colour is the photo).
"""

from __future__ import annotations

import bpy

SHADING_ITEMS = (
    ("EMISSION", "Emission", "Show the photo's colours unlit, unaffected by lights "
     "(exactly as photographed with the Standard view transform)"),
    ("PRINCIPLED", "Principled", "A lit Principled BSDF surface coloured by the photo"),
)


def _shader_from_color(tree: bpy.types.NodeTree, color_socket, shading: str) -> None:
    """Wire `color_socket` through an emission or Principled shader to the output."""
    nodes, links = tree.nodes, tree.links
    output = nodes.new("ShaderNodeOutputMaterial")
    output.location = (400, 0)
    if shading == "EMISSION":
        shader = nodes.new("ShaderNodeEmission")
        links.new(color_socket, shader.inputs["Color"])
        links.new(shader.outputs["Emission"], output.inputs["Surface"])
    else:
        shader = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(color_socket, shader.inputs["Base Color"])
        shader.inputs["Roughness"].default_value = 0.8
        links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    shader.location = (150, 0)


def _new_material(name: str) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender < 5.0: node trees are opt-in
        material.use_nodes = True
    material.node_tree.nodes.clear()
    return material


def photo_material(name: str, image: bpy.types.Image | None, shading: str = "EMISSION") -> bpy.types.Material:
    """A material that maps `image` through the mesh's UVs (grey when there is no image)."""
    material = _new_material(name)
    tree = material.node_tree
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.location = (-300, 0)
    texture.image = image
    texture.extension = "EXTEND"
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    uv.location = (-500, 0)
    tree.links.new(uv.outputs["UV"], texture.inputs["Vector"])
    _shader_from_color(tree, texture.outputs["Color"], shading)
    return material


def color_attribute_material(name: str, attribute: str, shading: str = "EMISSION") -> bpy.types.Material:
    """A material coloured by a geometry colour attribute (works on meshes and point clouds)."""
    material = _new_material(name)
    tree = material.node_tree
    node = tree.nodes.new("ShaderNodeAttribute")
    node.attribute_type = "GEOMETRY"
    node.attribute_name = attribute
    node.location = (-200, 0)
    _shader_from_color(tree, node.outputs["Color"], shading)
    return material


def srgb_to_linear(rgb) -> tuple:
    """Blender's scene-linear colour of sRGB bytes (0..255)."""
    channels = [value / 255.0 for value in rgb]
    return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)


def filament_material(name: str, rgb) -> bpy.types.Material:
    """A lit Principled surface in a filament's sRGB colour (also its colour in Solid view)."""
    material = _new_material(name)
    colour = (*srgb_to_linear(rgb), 1.0)
    node = material.node_tree.nodes.new("ShaderNodeRGB")
    node.outputs["Color"].default_value = colour
    node.location = (-200, 0)
    _shader_from_color(material.node_tree, node.outputs["Color"], "PRINCIPLED")
    material.diffuse_color = colour
    return material


def points_node_group(name: str, material: bpy.types.Material, radius: float) -> bpy.types.NodeTree:
    """Geometry Nodes: the mesh's vertices become render-able points of `radius` with `material`."""
    group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    group_in = nodes.new("NodeGroupInput")
    group_in.location = (-400, 0)
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.mode = "VERTICES"
    to_points.inputs["Radius"].default_value = radius
    to_points.location = (-150, 0)
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = material
    set_material.location = (100, 0)
    group_out = nodes.new("NodeGroupOutput")
    group_out.location = (300, 0)
    links.new(group_in.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(set_material.outputs["Geometry"], group_out.inputs["Geometry"])
    return group
