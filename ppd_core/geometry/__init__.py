"""Geometry of one photo: the camera, depth maps, depth discontinuities and lifting to points.

numpy, SciPy and OpenCV only; no torch. Everything here works in the OpenCV camera frame
(x right, y down, z forward, metres) with pixel centres at (x + 0.5, y + 0.5).
"""
