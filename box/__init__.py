"""Code that runs on the box (or describes it), in one visible place.

Standard library only (tests/test_layering.py keeps it so): the box's own
Python runs these files before trainbox's environment exists. The laptop
ships them as source (see docs/architecture.md, "What runs on the box").
"""

from __future__ import annotations

from pathlib import Path


def source(module: str) -> str:
    """The text of box/<module>.py, as the laptop ships it (inside a script, or on stdin)."""
    return (Path(__file__).parent / f"{module}.py").read_text()
