"""The add-on's Blender-data half: it only creates and removes Blender data from what was read
elsewhere. The importer (a result file's arrays to objects), materials, the photo's camera,
the photo source (which file the worker reads), a photo's earlier results, and an object's
triangles in millimetres for printing.
"""
