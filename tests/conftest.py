"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def importer():
    """The Blender add-on's importer module, with an empty scene before and after the test."""
    from tests.blender_harness import addon, clear_scene

    module = addon("importer")
    clear_scene()
    yield module
    clear_scene()
