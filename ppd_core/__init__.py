"""Depth from Image: one photo to clean 3D with Pixel-Perfect Depth.

This package imports nothing heavy at import time: `ppd_core.client` must load in
Blender's Python, which has neither torch nor numpy guarantees.
"""

__version__ = "0.1.0"
