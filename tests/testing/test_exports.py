"""The public surface of `callresilience.testing`."""

from __future__ import annotations

from callresilience import testing


def test_exported_members_are_pinned() -> None:
    """`__all__` lists exactly these names, sorted, and each one exists."""
    assert testing.__all__ == [
        "AgentAction",
        "AgentBehaviour",
        "BlackHole",
        "BrokenOk",
        "Decision",
        "Distribution",
        "DropResponse",
        "EncodedQuery",
        "ExpireTokens",
        "FakeServiceNow",
        "FakeTransport",
        "Fault",
        "FaultSchedule",
        "Hibernating",
        "Latency",
        "ManualClock",
        "RateLimit",
        "RateLimitVerdict",
        "RecordedRequest",
        "RefuseConnections",
        "ScheduledFault",
        "ScriptedAgents",
        "ServiceUnavailable",
        "TransactionCancelled",
        "decide",
        "parse_encoded_query",
    ]
    for name in testing.__all__:
        assert getattr(testing, name) is not None


def test_public_names_have_docstrings() -> None:
    """Every exported class and function documents itself."""
    for name in testing.__all__:
        member = getattr(testing, name)
        if callable(member) and name != "Fault":
            assert member.__doc__, name
