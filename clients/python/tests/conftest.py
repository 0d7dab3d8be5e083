"""Puts this folder on the path so the tests import `fake_master`, and clears the variables the
client reads (a token or TLS files of the caller's cluster must not reach the fake masters)."""

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def no_cluster_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("WASMOS_TOKEN", "WASMOS_TLS_CA", "WASMOS_TLS_CERT", "WASMOS_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield
