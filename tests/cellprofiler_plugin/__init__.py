"""Tests of the CellProfiler plug-in.

A package, so that its conftest is imported as ``cellprofiler_plugin.conftest`` and does not
replace ``tests/conftest.py`` as the module ``conftest`` that other test files import from.
"""
