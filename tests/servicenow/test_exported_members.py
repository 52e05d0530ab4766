"""The public surface of callresilience.servicenow, pinned."""

from __future__ import annotations

import callresilience.servicenow


def test_exported_members() -> None:
    """__all__ is alphabetical, complete and every name in it exists and is documented."""
    exported = callresilience.servicenow.__all__
    assert exported == sorted(exported)
    assert exported == [
        "ApiKey",
        "Auth",
        "BasicAuth",
        "BatchRequest",
        "BearerToken",
        "CreateResult",
        "OAuth2ClientCredentials",
        "OAuth2Password",
        "OAuth2RefreshToken",
        "Query",
        "QueryResult",
        "Record",
        "ServiceNowClient",
        "aiohttp_transport",
        "ref_value",
    ]
    public = {
        name
        for name, value in vars(callresilience.servicenow).items()
        if not name.startswith("_") and not isinstance(value, type(callresilience))
    }
    public.discard("annotations")
    assert public == set(exported)
    for name in exported:
        member = getattr(callresilience.servicenow, name)
        if callable(member) and hasattr(member, "__module__") and name not in ("Auth", "Record"):
            assert member.__doc__, name
