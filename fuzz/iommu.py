"""Harness iommu: type1 and iommufd map/unmap/translate streams, vs the model.

Covers: vfio_dma_do_map / vfio_dma_do_unmap check order (EINVAL, EEXIST, ENOSPC, IOVA
ranges, RLIMIT_MEMLOCK), v2 no-bisect unmap, empty unmaps, iommufd's partial unmap
(-ENOENT after earlier areas were removed), identity pinning, dma_avail and locked_vm
accounting, under small dma_entry_limit (2..64) and memlock limits.

Does not cover: pinning through host memory, listeners, faults (see convert).

Masks: nothing known.
"""


import atheris
import hypothesis  # noqa: F401  (imported before instrumentation: third-party code is not instrumented)

with atheris.instrument_imports(include=["rig"]):
    from rig.drive.harnesses import fuzz_argv, harness_for

HARNESS = harness_for("iommu", None)


def TestOneInput(data: bytes) -> None:
    HARNESS.one_input(data)


if __name__ == "__main__":
    atheris.Setup(fuzz_argv(__file__), TestOneInput)
    atheris.Fuzz()
