#!/usr/bin/env bash
# The CellProfiler plug-in's test (tests/cellprofiler_plugin), in its own virtualenv made from
# scratch: CellProfiler 5 (the cellprofiler-core/library nightlies) needs numpy < 2 and
# scipy < 1.11, so it cannot share miq's main environment. Runs a real headless pipeline
# (cellprofiler_core, no GUI, no Java). Exits non-zero when anything fails.
#
#   bash .ci/cellprofiler-test.sh            # venv in /tmp/miq-cpvenv (replaced)
#   CP_VENV=DIR PYTHON=python3.11 bash .ci/cellprofiler-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
CP_VENV="${CP_VENV:-/tmp/miq-cpvenv}"
# nightlies change daily: pinned to the build this plug-in was tested with
CP_VERSION="${CP_VERSION:-5.0.0.dev784}"
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

rm -rf "$CP_VENV"
"$PYTHON" -m venv "$CP_VENV"
# miq itself (non-editable: as a CellProfiler user installs it) in the same resolve as
# CellProfiler, so that pip picks versions of numpy/scipy/pillow both accept
"$CP_VENV/bin/python" -m pip install -q --no-compile \
  "numpy<2" \
  "cellprofiler-core-nightly==$CP_VERSION" \
  "cellprofiler-library-nightly==$CP_VERSION" \
  "pytest>=7" \
  .
echo "cellprofiler-test: installed in $((SECONDS - start)) s:" \
  "$("$CP_VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(numpy|scipy|onnxruntime|cellprofiler-core-nightly|miq) ' | tr -s ' ' | paste -sd ',' -)"

status=0
"$CP_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/cellprofiler_plugin \
  -W "ignore:invalid escape sequence:DeprecationWarning" || status=$?
echo "cellprofiler-test: exit $status after $((SECONDS - start)) s"
exit "$status"
