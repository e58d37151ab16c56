"""The trace format v1 (grammar in corpora/README.md): rendering of ops."""

from __future__ import annotations

from rig.ops import OPS, Op


def format_arg(kind: str, value) -> str:
    if kind == "int":
        return f"0x{value:x}"
    if kind == "dev":
        return str(value)
    a, b = kind[5:].split("|")
    return a if value else b


def format_props(op: Op) -> str:
    parts = []
    for key, value in op.props:
        if key == "fault":
            parts.append("fault: " + " ".join(str(spec) for spec in value))
        elif key == "interleave":
            at, nested = value
            parts.append(f"interleave: {at} {format_op(nested)}")
        else:
            parts.append(f"{key}: {value}")
    return f"({', '.join(parts)})" if parts else ""


def format_op(op: Op) -> str:
    """``kvm_convert_memory(0x2000, 0x1000, private)  (fault: vfio.dma_map=ENOSPC@1)``"""
    spec = OPS[op.name]
    args = ", ".join(format_arg(a.kind, v) for a, v in zip(spec.args, op.args))
    props = format_props(op)
    return f"{op.name}({args})" + (f"  {props}" if props else "")
