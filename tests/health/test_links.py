"""The link monitor: nodes without heartbeats become unreachable, and come back."""

from __future__ import annotations

import pytest

from callresilience import InvalidInput
from callresilience.health import LinkMonitor, NodeLinkChanged


def test_a_silent_node_goes_down_after_the_timeout_and_back_on_a_heartbeat() -> None:
    """No heartbeat for `timeout` seconds: down; the next heartbeat: up again."""
    links = LinkMonitor(timeout=15)
    links.watch("paris", 0)
    links.watch("lyon", 0)
    links.heartbeat("lyon", 10)
    assert links.next_deadline() == 15
    assert links.advance(14.9) == []
    assert links.advance(15) == [NodeLinkChanged("paris", False, 15, "no heartbeat for 15 s")]
    assert not links.is_up("paris")
    assert links.is_up("lyon")
    assert links.advance(16) == []
    assert links.heartbeat("paris", 20) == [
        NodeLinkChanged("paris", True, 20, "heartbeat received")
    ]
    assert links.heartbeat("paris", 21) == []
    assert links.next_deadline() == 25


def test_heartbeats_keep_a_node_up_however_long() -> None:
    """A node that keeps sending heartbeats within the timeout never goes down."""
    links = LinkMonitor(timeout=5)
    links.watch("paris", 0)
    for t in range(1, 1_000, 4):
        links.heartbeat("paris", t)
        assert links.advance(t + 0.5) == []
    assert "down=[]" in repr(links)


def test_bad_settings_and_names_are_refused() -> None:
    """A timeout must be positive; node names are identifiers."""
    with pytest.raises(InvalidInput, match="timeout"):
        LinkMonitor(timeout=0)
    with pytest.raises(InvalidInput, match="identifier"):
        LinkMonitor().watch("a b", 0)


def test_nodes_lists_every_watched_node_by_name() -> None:
    """nodes() lists the watched nodes sorted, down ones included, once each."""
    links = LinkMonitor(timeout=15)
    assert links.nodes() == []
    links.watch("paris", 0)
    links.heartbeat("lyon", 1)
    links.watch("berlin", 2)
    links.watch("paris", 3)
    links.advance(100)
    assert links.nodes() == ["berlin", "lyon", "paris"]
    assert not links.is_up("berlin")
