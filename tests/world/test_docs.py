"""Generated docs stay in step with the code that generates them."""

from pathlib import Path

from rig.cli import report

ROOT = Path(__file__).resolve().parents[2]


def test_designs_doc_is_current():
    """docs/designs.md is `rig designs --markdown`; regenerate it when this fails."""
    assert (ROOT / "docs" / "designs.md").read_text() == report.markdown("cy") + "\n"
