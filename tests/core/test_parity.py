"""Both backends expose the same names and signatures (cytoolz's parity test)."""

import inspect

import pytest

import rig.core
from rig.core import API, load_backend

pytestmark = pytest.mark.skipif("cy" not in __import__("tests.conftest").conftest.BACKENDS,
                                reason="the Cython core is not in use (RIG_PUREPYTHON=1)")


def _public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def _params(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


def test_same_exported_names():
    cy, pure = load_backend("cy"), load_backend("pure")
    for name in API:
        assert hasattr(cy, name), name
        assert hasattr(pure, name), name


def _instances(b):
    container = b.VfioType1Container(8)

    class Listener(b.RamDiscardListener):
        pass

    return {
        "Bitmap": b.Bitmap(100),
        "RamBlockAttributes": b.RamBlockAttributes(0x10000, 0x1000, "none"),
        "RamDiscardListener": Listener(),
        "VFIORamDiscardListener": b.VFIORamDiscardListener(container, 0x1000),
        "VfioType1Container": container,
        "IommufdIoas": b.IommufdIoas(),
    }


@pytest.mark.parametrize("cls", ["Bitmap", "RamBlockAttributes", "RamDiscardListener",
                                 "VFIORamDiscardListener", "VfioType1Container",
                                 "IommufdIoas"])
def test_same_methods_and_signatures(cls):
    cy_obj = _instances(load_backend("cy"))[cls]
    pure_obj = _instances(load_backend("pure"))[cls]
    assert _public(cy_obj) == _public(pure_obj), (
        f"{cls}: only in cy: {set(_public(cy_obj)) - set(_public(pure_obj))}, "
        f"only in pure: {set(_public(pure_obj)) - set(_public(cy_obj))}")
    for name in _public(cy_obj):
        a, b = getattr(cy_obj, name), getattr(pure_obj, name)
        assert callable(a) == callable(b), f"{cls}.{name}: callable in one backend only"
        if callable(a):
            pa, pb = _params(a), _params(b)
            if pa is not None and pb is not None:
                assert [p[0] for p in pa] == [p[0] for p in pb], f"{cls}.{name}: {pa} != {pb}"


def test_constructor_signatures_match():
    cy, pure = load_backend("cy"), load_backend("pure")
    for cls in ("RamBlockAttributes", "VFIORamDiscardListener", "VfioType1Container",
                "IommufdIoas", "Bitmap"):
        pa = _params(getattr(cy, cls))
        pb = _params(getattr(pure, cls))
        if pa is not None and pb is not None:
            assert [p[0] for p in pa] == [p[0] for p in pb], cls


def test_default_backend_is_cython_unless_asked():
    assert rig.core.BACKEND == "cy"
