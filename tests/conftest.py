"""Shared pytest configuration.

Async tests use AnyIO's pytest plugin (AnyIO ships with httpx) on the asyncio backend:
mark them `@pytest.mark.anyio`.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio, the only loop the library supports."""
    return "asyncio"
