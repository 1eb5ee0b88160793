from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from interlock.lab import Lab
from tests.integration.lab.support import running_lab


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture
def lab(shared_lab: Lab) -> Lab:
    """The module's lab, back in its starting state."""
    shared_lab.reset()
    return shared_lab


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not intercept loopback calls.
    with httpx.Client(trust_env=False, timeout=5) as client:
        yield client
