"""The async ServiceNow Table API client: auth, encoded queries, and errors that say what to do.

Every failure is one of the `ServiceNowError` classes in `callresilience`: `TransientError`
(nothing was written), `RateLimited`, `AmbiguousError` (a write may have committed),
`PermanentError` and `AuthenticationError`. See ``docs/servicenow.md``.
"""

from __future__ import annotations

from ._auth import (
    ApiKey,
    Auth,
    BasicAuth,
    BearerToken,
    OAuth2ClientCredentials,
    OAuth2Password,
    OAuth2RefreshToken,
)
from ._client import BatchRequest, CreateResult, QueryResult, Record, ServiceNowClient, ref_value
from ._query import Query
from ._transport import aiohttp_transport

__all__ = [
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
