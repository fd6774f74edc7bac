"""The add-on's bpy-free half: the backend's Python environment (set-up), interpreters, the
weights download and check, print exports, Blender's words for the backend's messages, and
the one background-task mechanism (`tasks`). Nothing here imports bpy (a test proves it), so
all of it runs, and is tested, in any Python.
"""
