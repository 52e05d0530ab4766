"""The base URLs of an instance, in order of preference, and which one is in use.

On a connect failure or a timeout the client moves to the next URL in line and stays there
until that one fails in turn (then it wraps round). The client never moves back by itself: a
URL that just failed is the least likely to be healthy, and flapping between two half-broken
routes is worse than staying on one that works. The engine fails back to the primary once
probes have found it healthy for a while (`use`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import httpx

from .._errors import InvalidInput

__all__ = ["Endpoints", "check_base_url"]


def check_base_url(url: object) -> str:
    """Return `url` without a trailing slash if it can be an instance's base URL.

    Raises:
        InvalidInput: When it is not an http(s) URL with a host, or carries credentials, a
            query or a fragment.
    """
    if not isinstance(url, str):
        raise InvalidInput(
            f"base_url: expected a string such as 'https://example.service-now.com', got "
            f"{type(url).__name__}",
            field="base_url",
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(
            "base_url: not an http(s) URL with a host; use the form "
            "'https://example.service-now.com'",
            field="base_url",
        )
    if parsed.userinfo:
        # Never shown: it holds a credential.
        raise InvalidInput(
            "base_url: must not carry a user name or password; pass them with auth=",
            field="base_url",
        )
    if parsed.query or parsed.fragment:
        raise InvalidInput("base_url: must not have a query or a fragment", field="base_url")
    return url.rstrip("/")


def _to_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    urls = (value,) if isinstance(value, str) else tuple(value)
    if not urls:
        raise InvalidInput("base_url: give at least one URL", field="base_url")
    checked = tuple(check_base_url(url) for url in urls)
    if len(set(checked)) != len(checked):
        raise InvalidInput("base_url: the same URL is given twice", field="base_url")
    return checked


@attrs.define
class Endpoints:
    """Base URLs in order of preference, and the one in use.

    Args:
        urls: One URL or several; each is checked with `check_base_url`.
    """

    urls: tuple[str, ...] = attrs.field(converter=_to_urls)
    _index: int = attrs.field(default=0, init=False)

    @property
    def current(self) -> str:
        """The URL requests go to now."""
        return self.urls[self._index]

    def failed(self, url: str) -> bool:
        """Move past `url` if it is still the one in use.

        Several requests in flight on the same URL may fail together; only the first moves
        the client on, so that one outage does not skip a healthy URL.

        Returns:
            Whether the URL in use changed.
        """
        if len(self.urls) == 1 or url != self.current:
            return False
        self._index = (self._index + 1) % len(self.urls)
        return True

    def known(self, url: str, field: str = "url") -> str:
        """Return `url` as configured (no trailing slash) if it is one of `urls`.

        Raises:
            InvalidInput: It is not.
        """
        checked = check_base_url(url)
        if checked not in self.urls:
            raise InvalidInput(
                f"{field}: not one of the client's base URLs; see client.endpoints", field=field
            )
        return checked

    def use(self, url: str) -> bool:
        """Make `url` the one in use; return whether that changed anything.

        Raises:
            InvalidInput: `url` is not one of `urls`.
        """
        url = self.known(url)
        index = self.urls.index(url)
        changed = index != self._index
        self._index = index
        return changed

    def __len__(self) -> int:
        return len(self.urls)
