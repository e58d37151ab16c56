"""Shared fixtures.  ``core`` runs a test once per core backend (Cython and the pure-Python
twin); with RIG_PUREPYTHON=1 only the twin is used, for machines without a compiler."""

import os

import pytest
from hypothesis import HealthCheck, settings

from rig.core import load_backend
from rig.world import designs

# CI: hypothesis' derandomized "ci" profile, extended, so CI runs are reproducible and
# have no deadline.  Loaded when CI=true, and named by ci/test (--hypothesis-profile)
# whatever the environment says.
settings.register_profile(
    "rig-ci", parent=settings.get_profile("ci"), max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("rig-dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rig-ci" if os.environ.get("CI") else "rig-dev")


def _backends():
    if os.environ.get("RIG_PUREPYTHON", "") not in ("", "0"):
        return ["pure"]
    return ["cy", "pure"]


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def core(request):
    backend = load_backend(request.param)
    backend.reset_coverage_marks()
    return backend


@pytest.fixture
def backend_name(core):
    return core.name


@pytest.fixture
def registry(monkeypatch):
    """The design registry, restored after the test (loading registers for good)."""
    saved = [dict(d) for d in (designs.DESIGNS, designs.SOURCES, designs._LOADED)]
    monkeypatch.setenv(designs.ENV, "")
    yield designs
    for live, copy in zip((designs.DESIGNS, designs.SOURCES, designs._LOADED), saved):
        live.clear()
        live.update(copy)
