"""The package's public surface: sorted, complete, importable."""

from __future__ import annotations

import client


def test_all_is_sorted():
    """__all__ stays sorted, like httpx's."""
    assert client.__all__ == sorted(client.__all__)


def test_all_names_exist_and_nothing_public_is_missing():
    """Every exported name exists; every public name of the package is exported."""
    for name in client.__all__:
        assert hasattr(client, name), name
    # (pytest marks the distribution's packages for assertion rewriting, which adds "@py_*" names)
    public = {n for n in vars(client) if not n.startswith(("_", "@"))} - {"annotations"}
    assert public == set(client.__all__)


def test_every_exported_class_is_documented():
    """Each exported class and function has a docstring."""
    for name in client.__all__:
        obj = getattr(client, name)
        if callable(obj):
            assert obj.__doc__, name
