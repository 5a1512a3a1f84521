"""The CellProfiler plug-in's tests run only where CellProfiler 5 (cellprofiler_core) is
installed, i.e. in the separate virtualenv made by ``.ci/cellprofiler-test.sh``; elsewhere this
folder is not collected (CellProfiler 5 needs numpy < 2, miq's main environment has numpy 2)."""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("cellprofiler_core") else ["test_*.py"]
