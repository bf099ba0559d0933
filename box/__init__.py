"""Code that runs on the box (or describes it), in one visible place.

Standard library only (tests/test_layering.py keeps it so): the box's own
Python runs these files before trainbox's environment exists. The laptop
ships them as source (see docs/architecture.md, "What runs on the box").
"""
