"""Meshing and print prep: arrays in, meshes and bytes out.

Grid triangulation (`mesh.grid`), Poisson (`mesh.poisson`), decimation (`mesh.decimate`),
print solids (`mesh.solid`) with their relief options (`mesh.relief_print`: frame, outline,
hanger, curve, smoothing, budget, colours), slicer checks (`mesh.checks`) and format writers
(`mesh.export`, `mesh.painted_3mf`). Every mesher returns a `mesh.data.MeshData`. Nothing here
imports `ppd_core`; importing this package itself loads nothing (`mesh.limits` and
`mesh.print_options` are read by option tables that run without numpy).
"""
