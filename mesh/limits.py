"""Limits of what the meshers accept, in the standard library alone so that option tables
(the command's, the worker's and the Blender add-on's) can read them without numpy."""

POISSON_DEPTHS = (5, 12)
"""Octree depths accepted by `mesh.poisson`. Below 5 Open3D's solver prints hundreds of
warnings, raises, or aborts the process (seen at depth 1-4 on a flat 64x48 cloud); above 12
memory explodes."""

PRINT_MM = (0.01, 100_000.0)
"""Print sizes accepted by `mesh.solid` (mm): finer than any printer, and up to 100 m. Outside
that a float32 STL cannot hold a closed solid."""
