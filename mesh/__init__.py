"""Meshing and print prep: arrays in, meshes and bytes out.

Grid triangulation (`mesh.grid`), Poisson (`mesh.poisson`), decimation (`mesh.decimate`),
print solids (`mesh.solid`), slicer checks (`mesh.checks`) and format writers
(`mesh.export`). Every mesher returns a `mesh.data.MeshData`. Nothing here imports
`ppd_core`; importing this package itself loads nothing (`mesh.limits` is read by option
tables that run without numpy).
"""
