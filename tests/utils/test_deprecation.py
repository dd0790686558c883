"""Moved names forward to their new home with a DeprecationWarning."""

import types

import pytest

from sparselth.utils.deprecation import moved_names


def test_moved_name_warns_and_forwards():
    getattr_ = moved_names("pkg.old", {"join": "os.path:join"})
    with pytest.warns(DeprecationWarning, match=r"pkg\.old\.join moved to os\.path\.join"):
        import os.path
        assert getattr_("join") is os.path.join


def test_unknown_name_is_an_attribute_error():
    module = types.ModuleType("pkg.old")
    module.__getattr__ = moved_names("pkg.old", {})
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        module.__getattr__("nothing")


@pytest.mark.parametrize("old,new", [("sparselth.train", "accuracy"),
                                     ("sparselth.models", "synthetic_images")])
def test_package_shims(old, new):
    import importlib

    with pytest.warns(DeprecationWarning):
        assert callable(getattr(importlib.import_module(old), new))
