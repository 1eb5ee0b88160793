"""Interlock's test suite: tests/unit needs no server; integration and system start real ones."""

import os

# GNU readline, once anything in pytest's main process imports it, exports COLUMNS=80 and LINES
# into the environment that process's children inherit: pytest-xdist's workers included.
# Interlock's consoles read COLUMNS when they are built (at import), so in a worker they would be
# stuck at 80 columns whatever width a test then asks for. A test that needs a width sets it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)
