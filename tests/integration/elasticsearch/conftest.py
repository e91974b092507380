"""The `server` fixture: either real node (`support.es_fixtures`, registered for the whole
suite in ``tests/conftest.py``), for tests that must hold on both flavours."""

from __future__ import annotations

import pytest

from support.es_servers import SearchServer


@pytest.fixture(params=["opensearch", "elasticsearch"])
def server(request: pytest.FixtureRequest) -> SearchServer:
    """Either node: tests that must hold on both flavours take this one."""
    return request.getfixturevalue(str(request.param))  # type: ignore[no-any-return]
