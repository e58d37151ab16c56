"""Differential: the Cython core, the pure-Python twin and the reference model agree on
return codes, bitmap, listener call logs, listener order and mappings after every op."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.check import differential
from rig.check.differential import CoreConfig, DifferentialMismatch

from tests.conftest import BACKENDS

IMPLS = tuple(BACKENDS) + ("model",)

CONFIGS = [
    CoreConfig(rollback=rb, iommu=io, dma_entry_limit=lim, nblocks=n, block_size=bs)
    for rb in ("none", "listeners", "full", "sources")
    for io, lim in (("type1", 6), ("iommufd", 0))
    for n, bs in ((24, 0x1000), (67, 0x2000))
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
@settings(max_examples=25)
@given(data=st.data())
def test_backends_and_model_agree(cfg, data):
    # The op stream is decoded from a list of integers, so hypothesis shrinks the
    # integers and the ops shrink with them.
    draws = data.draw(st.lists(st.integers(0, 2**32), min_size=8, max_size=120))
    it = iter(draws)
    ops = []
    while True:
        try:
            ops.append(differential.random_op(lambda n: next(it) % n, cfg))
        except StopIteration:
            break
    differential.run(ops, cfg, IMPLS)


@pytest.mark.parametrize("seed", range(4))
def test_seeded_long_streams_agree(seed):
    for cfg in CONFIGS[::3]:
        ops = differential.random_ops(random.Random(seed), cfg, 400)
        assert differential.run(ops, cfg, IMPLS) == 400


def test_mismatch_is_reported_with_the_op():
    """The differential check can fail: a model with a planted bug (notification order
    not head-first) is caught at the first op that shows it."""
    from rig.check import model

    original = model.ModelRamBlockAttributes.register_listener

    def tail_insert(self, rdl, section):
        ret = original(self, rdl, section)
        if self.entries and self.entries[0][0] is rdl:
            self.entries.append(self.entries.pop(0))
        return ret

    model.ModelRamBlockAttributes.register_listener = tail_insert
    try:
        ops = [("register", "R0", 0, 0x4000, 0), ("register", "R1", 0, 0x4000, 0)]
        with pytest.raises(DifferentialMismatch) as info:
            differential.run(ops, CoreConfig(), IMPLS)
        assert info.value.index == 1 and info.value.what == "listeners"
    finally:
        model.ModelRamBlockAttributes.register_listener = original


def test_selftest_cli_passes():
    from rig.cli.main import main

    assert main(["selftest", "--ops", "60"]) == 0
