"""The unit tier: pure code only. The servers and the lab of tests/conftest.py are refused here,
so a test that needs them belongs to tests/integration (and `./scripts/test --fast` stays fast)."""

from __future__ import annotations

import pytest


def _refused(name: str) -> None:
    raise pytest.UsageError(f"tests/unit uses no {name}: move the test to tests/integration")


@pytest.fixture(scope="session")
def env() -> None:
    _refused("Temporal server")


@pytest.fixture(scope="session")
def lab() -> None:
    _refused("lab")
