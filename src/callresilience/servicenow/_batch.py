"""ServiceNow's Batch API: many Table API requests in one HTTP round trip.

`POST /api/now/v1/batch` carries ``rest_requests``, each a method, a relative URL, headers
and a base64 body; the answer lists ``serviced_requests`` (each with its own status, headers
and base64 body) and ``unserviced_requests`` (ids that were not run, for instance when the
batch ran out of time). The sub-requests run one after the other and are not atomic: each
commits or fails on its own, so each gets its own outcome here, classified by the same rules
as a request sent alone.

This module builds the request body and reads the answer; the client sends it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from .._errors import AmbiguousError, InvalidInput, ServiceNowError, TransientError
from .._model import check_sys_id
from ._checks import check_table, compact_json, payload_json, with_correlation
from ._classify import classify_response, record_of

__all__ = ["BATCH_PATH", "BatchRequest", "batch_body", "batch_outcomes"]

BATCH_PATH: Final = "/api/now/v1/batch"
_TABLE_PATH: Final = "/api/now/table/"
_SUB_HEADERS_JSON: Final = compact_json(
    [
        {"name": "Accept", "value": "application/json"},
        {"name": "Content-Type", "value": "application/json"},
    ]
)


@attrs.frozen
class BatchRequest:
    """One Table API write inside a batch; build it with `create` or `update`.

    Attributes:
        method: ``"POST"`` or ``"PATCH"``.
        table: The table.
        payload: The fields to write.
        sys_id: The record to change (updates only).
        body: The payload as the JSON sent.

    Raises:
        InvalidInput: When the table, the sys_id or the payload is not valid.
    """

    method: Literal["POST", "PATCH"]
    table: str
    payload: Mapping[str, Any] = attrs.field(hash=False, repr=False)
    sys_id: str | None = None
    body: bytes = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.method not in ("POST", "PATCH"):
            raise InvalidInput(
                f"method: {self.method!r} cannot be batched; give 'POST' or 'PATCH' (use "
                "BatchRequest.create or BatchRequest.update)",
                field="method",
            )
        check_table(self.table)
        if self.method == "PATCH":
            check_sys_id("sys_id", self.sys_id)
        elif self.sys_id is not None:
            raise InvalidInput("sys_id: a POST takes none; it creates the record", field="sys_id")
        # Checked and encoded once, here: the JSON that goes into the batch.
        object.__setattr__(self, "body", payload_json(self.payload))

    @classmethod
    def create(
        cls,
        table: str,
        payload: Mapping[str, Any],
        *,
        correlation: tuple[str, str] | None = None,
    ) -> BatchRequest:
        """A record to create, as `ServiceNowClient.create` would (a POST).

        Args:
            table: The table.
            payload: The record's fields.
            correlation: ``(field, value)`` as for `ServiceNowClient.create_once`: the field
                is added to the payload if missing, so that the record can be looked up
                should the batch's answer be lost.
        """
        if correlation is not None:
            payload = with_correlation(payload, correlation)[0]
        return cls("POST", table, payload)

    @classmethod
    def update(cls, table: str, sys_id: str, payload: Mapping[str, Any]) -> BatchRequest:
        """Fields to change on a record, as `ServiceNowClient.update` would (a PATCH)."""
        return cls("PATCH", table, payload, sys_id)

    @property
    def path(self) -> str:
        """The request's path (no query string)."""
        if self.sys_id is None:
            return _TABLE_PATH + self.table
        return f"{_TABLE_PATH}{self.table}/{self.sys_id}"


def batch_body(batch_id: str, requests: Sequence[BatchRequest], query: str) -> bytes:
    """The Batch API request body for `requests`, as JSON.

    Sub-request ids are their positions, from ``"0"``; `query` (``"?a=b"`` or ``""``) is
    added to every URL. Written as text around each request's checked body (the fixed parts
    once), not built as objects and encoded again: a batch carries hundreds of them.
    """
    items = [
        f'{{"id":"{index}","method":"{request.method}","url":{compact_json(request.path + query)},'
        f'"headers":{_SUB_HEADERS_JSON},"body":"{base64.b64encode(request.body).decode()}",'
        '"exclude_response_headers":false}'
        for index, request in enumerate(requests)
    ]
    head = f'{{"batch_request_id":{compact_json(batch_id)},"rest_requests":['
    return f"{head}{','.join(items)}]}}".encode()


def _served(answer: object) -> tuple[dict[str, Mapping[str, Any]], set[str]] | None:
    """The serviced items by id and the unserviced ids, or None if the answer is unusable."""
    if not isinstance(answer, Mapping) or "serviced_requests" not in answer:
        return None
    serviced = answer["serviced_requests"]
    unserviced = answer.get("unserviced_requests", [])
    if not isinstance(serviced, list) or not isinstance(unserviced, list):
        return None
    by_id: dict[str, Mapping[str, Any]] = {}
    for item in serviced:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            return None
        by_id[item["id"]] = item
    return by_id, {str(item) for item in unserviced}


def _item_outcome(
    request: BatchRequest, item: Mapping[str, Any], now: float
) -> dict[str, Any] | ServiceNowError:
    """Classify one serviced sub-request as if it had been sent alone."""
    status = item.get("status_code")
    headers = item.get("headers") or []
    try:
        content = base64.b64decode(item.get("body") or "", validate=True)
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError(status)
        pairs = {str(h["name"]).lower(): str(h["value"]) for h in headers}
    except (binascii.Error, ValueError, TypeError, KeyError):
        return AmbiguousError(
            f"{request.method} {request.path}: the batch answer for it is unreadable; the "
            "write may or may not have been committed, look the record up before sending it "
            "again"
        )
    record = _plain_record(status, pairs, content)
    if record is not None:
        return record
    action = f"{request.method} {request.path}"
    outcome = classify_response(
        status_code=status, headers=pairs, content=content, write=True, action=action, now=now
    )
    if isinstance(outcome, ServiceNowError):
        return outcome
    return record_of(outcome, action, write=True, status_code=status)


def _plain_record(status: int, headers: Mapping[str, str], content: bytes) -> dict[str, Any] | None:
    """The record of a plain success (a 2xx JSON ``{"result": {...}}``), else None.

    The common case, read without the full classification; anything else, even a success
    whose body is in doubt, goes through `classify_response`.
    """
    if not (200 <= status < 300) or "html" in headers.get("content-type", "").lower():
        return None
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or "error" in body or body.get("status") == "failure":
        return None
    result: object = body.get("result")
    return result if isinstance(result, dict) else None


def batch_outcomes(
    requests: Sequence[BatchRequest], answer: object, now: float
) -> list[dict[str, Any] | ServiceNowError] | None:
    """Each request's record or error, in order; None when the answer is not a batch answer.

    A sub-request listed as unserviced was not run (`TransientError`); one missing from both
    lists may have run (`AmbiguousError`).
    """
    served = _served(answer)
    if served is None:
        return None
    by_id, unserviced = served
    outcomes: list[dict[str, Any] | ServiceNowError] = []
    for index, request in enumerate(requests):
        action = f"{request.method} {request.path}"
        item = by_id.get(str(index))
        if item is not None:
            outcomes.append(_item_outcome(request, item, now))
        elif str(index) in unserviced:
            outcomes.append(
                TransientError(
                    f"{action}: the instance did not run it (unserviced in the batch); send it "
                    "again"
                )
            )
        else:
            outcomes.append(
                AmbiguousError(
                    f"{action}: the batch answer does not mention it; the write may or may not "
                    "have been committed, look the record up before sending it again"
                )
            )
    return outcomes
