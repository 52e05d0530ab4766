"""Business continuity end to end: modes per scope, agent notices, nodes, failover, status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest

from callresilience import (
    Agent,
    ComponentStatus,
    InvalidInput,
    ItsmUnavailable,
    Mode,
    ModeConfig,
    OfferOutcome,
    Severity,
    TransferTargetUnavailable,
    UnknownAgent,
)
from callresilience.engine import AgentNotified, EndpointChanged, EngineConfig, Notice
from callresilience.health import IncidentChanged, ModeChanged, NodeLinkChanged
from callresilience.routing import AgentActivity, CallConnected
from callresilience.testing import RefuseConnections

from .conftest import Rig, build_rig, make_config

pytestmark = pytest.mark.anyio

EMEA = Agent("erin", queues=["support"], scopes={"region:emea"}, user_sys_id="e" * 32)
EMMA = Agent("emma", queues=["support"], scopes={"region:emea"}, user_sys_id="f" * 32)
AMER = Agent("alex", queues=["support"], scopes={"region:amer"}, user_sys_id="a" * 32)
REMOTE = Agent("rita", queues=["support"], node="site-b", user_sys_id="c" * 32)
LOCAL = Agent("lou", queues=["support"], user_sys_id="d" * 32)
INTERACTION = "interaction"
PRIMARY, SECONDARY = "https://primary.service-now.com", "https://secondary.service-now.com"


@attrs.define
class Routes(httpx.AsyncBaseTransport):
    """Two routes to one instance; the primary's can be cut (connections refused)."""

    fake: httpx.AsyncBaseTransport
    primary_down: bool = False
    hosts: list[str] = attrs.Factory(list)

    def attach(self, fake: httpx.AsyncBaseTransport) -> Routes:
        """Lead both routes to `fake`."""
        self.fake = fake
        return self

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        if self.primary_down and request.url.host == httpx.URL(PRIMARY).host:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.fake.handle_async_request(request)


async def start(
    config: EngineConfig, agents: list[Agent], transport: Routes | None = None
) -> AsyncIterator[Rig]:
    """An engine on virtual time with `agents` logged in and ready."""
    route = None if transport is None else transport.attach
    async with build_rig(config, agents=agents, route=route) as rig:
        yield rig


@pytest.fixture
async def regions() -> AsyncIterator[Rig]:
    """Two emea agents and one amer agent; modes switch after 10 s and return after 60 s."""
    config = make_config(modes=ModeConfig(enter_after=10, leave_after=60))
    async for rig in start(config, [EMEA, EMMA, AMER]):
        yield rig


def of(rig: Rig, kind: type) -> list[Any]:
    """The events of one type, in order."""
    return [e for e in rig.events if isinstance(e, kind)]


def notices(rig: Rig, agent_id: str) -> list[Notice]:
    """The notices the channel delivered to an agent, in order."""
    return [n for a, n in rig.channel.notices if a == agent_id]


async def carrier(rig: Rig, status: ComponentStatus) -> None:
    """The adapter reports the emea carrier."""
    await rig.engine.report_component("carrier-emea", status, scopes=["region:emea"])
    await rig.settle()


async def connect(rig: Rig, call_id: str, agent_id: str) -> None:
    """A call arrives and `agent_id` accepts the offer."""
    await rig.engine.call_arrived(rig.call(call_id))
    await rig.settle()
    await rig.engine.accept(call_id, agent_id)


# -- modes per scope ---------------------------------------------------------------------------


async def test_an_outage_in_one_region_switches_only_that_region(regions: Rig) -> None:
    """The emea carrier fails: emea switches after enter_after, amer never does."""
    rig = regions
    await carrier(rig, ComponentStatus.OUTAGE)
    await rig.advance(9)
    assert rig.engine.mode("region:emea") is Mode.NORMAL
    await rig.advance(1.5)
    (change,) = of(rig, ModeChanged)
    assert (change.scope, change.new) == ("region:emea", Mode.RESILIENCY)
    assert rig.engine.mode("region:amer") is Mode.NORMAL
    assert {n.agent_id for n in of(rig, AgentNotified)} == {"erin", "emma"}
    (notice,) = notices(rig, "erin")
    assert notice.kind == "mode"
    assert notice.data["mode"] == "resiliency"
    assert notice.data["scope"] == "region:emea"
    assert notice.data["forced"] is False
    assert notices(rig, "alex") == []
    (incident,) = of(rig, IncidentChanged)
    assert (incident.change, incident.incident.severity) == ("opened", Severity.MAJOR)


async def test_calls_keep_flowing_and_a_held_region_drains_on_return(regions: Rig) -> None:
    """In resiliency, emea calls are answered, their records wait, and drain back in normal."""
    rig = regions
    await carrier(rig, ComponentStatus.OUTAGE)
    await rig.advance(11)
    for agent in (EMMA, AMER):
        await rig.engine.not_ready(agent.agent_id)
    await connect(rig, "c-emea", "erin")
    await rig.engine.end("c-emea")
    await rig.engine.ready("erin")
    await rig.engine.not_ready("erin")
    await rig.engine.ready("alex")
    await connect(rig, "c-amer", "alex")
    await rig.engine.end("c-amer")
    await rig.advance(10)
    assert len(rig.records(INTERACTION, "correlation_id", "c-amer")) == 1
    assert rig.records(INTERACTION, "correlation_id", "c-emea") == []
    status = await rig.engine.status()
    assert status["journal"]["held_groups"] == ["region:emea"]
    # The phone log and the Interaction, each carrying its end: the two updates, appended
    # while their creates were held, were folded into them.
    assert status["journal"]["depth"] == 2
    await carrier(rig, ComponentStatus.OPERATIONAL)
    await rig.advance(59)
    assert rig.engine.mode("region:emea") is Mode.RESILIENCY
    await rig.advance(2)
    assert rig.engine.mode("region:emea") is Mode.NORMAL
    await rig.drained()
    assert rig.one(INTERACTION, "correlation_id", "c-emea")["state"] == "closed_complete"
    assert notices(rig, "erin")[-1].data["mode"] == "normal"
    assert [c.change for c in of(rig, IncidentChanged)] == ["opened", "resolved"]


async def test_a_busy_agent_is_told_after_the_call(regions: Rig) -> None:
    """An agent on a call when the mode changes gets the notice when the call ends."""
    rig = regions
    await connect(rig, "c1", "erin")
    await rig.settle()
    assert rig.engine.router.agent("erin").activity is AgentActivity.ON_CALL
    await carrier(rig, ComponentStatus.OUTAGE)
    await rig.advance(11)
    assert notices(rig, "erin") == []
    assert len(notices(rig, "emma")) == 1
    status = await rig.engine.status()
    assert {(n["agent_id"], n["delivered"]) for n in status["notices"]} == {
        ("erin", False),
        ("emma", True),
    }
    (emma,) = [n for n in status["notices"] if n["agent_id"] == "emma"]
    assert emma["force_at"] == pytest.approx(status["time"] + 30, abs=1)
    await rig.engine.end("c1")
    await rig.settle()
    (notice,) = notices(rig, "erin")
    assert notice.data["mode"] == "resiliency"


async def test_an_outage_over_before_the_call_ends_needs_no_notice(regions: Rig) -> None:
    """A busy agent whose scope switched and switched back during the call is told nothing."""
    rig = regions
    await connect(rig, "c1", "erin")
    await rig.engine.force_mode("region:emea", Mode.RESILIENCY)
    await rig.engine.force_mode("region:emea", Mode.NORMAL)
    await rig.engine.end("c1")
    await rig.settle()
    assert notices(rig, "erin") == []
    assert [n.data["mode"] for n in notices(rig, "emma")] == ["resiliency", "normal"]


async def test_an_unacknowledged_notice_is_forced_after_the_deadline(regions: Rig) -> None:
    """No acknowledgement in 30 s: the notice comes again, forced; acknowledged ones do not."""
    rig = regions
    await rig.engine.force_mode("region:emea", Mode.RESILIENCY)
    await rig.settle()
    (first,) = notices(rig, "emma")
    assert await rig.engine.acknowledge("emma", first.data["notice_id"]) == 1
    await rig.advance(29)
    assert len(notices(rig, "erin")) == 1
    await rig.advance(1.5)
    original, forced = notices(rig, "erin")
    assert forced.data["forced"] is True
    assert forced.data["notice_id"] == original.data["notice_id"]
    assert forced.text.startswith("Now:")
    assert len(notices(rig, "emma")) == 1
    await rig.advance(60)
    assert len(notices(rig, "erin")) == 2


async def test_an_urgent_report_switches_at_once(regions: Rig) -> None:
    """An adapter sure of its outage switches the scope without waiting for enter_after."""
    rig = regions
    await rig.engine.report_component(
        "carrier-emea", ComponentStatus.OUTAGE, scopes=["region:emea"], urgent=True
    )
    await rig.settle()
    assert rig.engine.mode("region:emea") is Mode.RESILIENCY
    assert rig.engine.mode("region:amer") is Mode.NORMAL


async def test_an_agent_logging_in_during_resiliency_is_told_at_once(regions: Rig) -> None:
    """Login while the agent's scope is in resiliency mode brings a notice straight away."""
    rig = regions
    await rig.engine.force_mode("region:amer", Mode.RESILIENCY)
    late = Agent("ali", queues=["support"], scopes={"region:amer"})
    await rig.engine.login(late)
    await rig.settle()
    (notice,) = notices(rig, "ali")
    assert notice.data["mode"] == "resiliency"


async def test_the_breaker_opening_switches_every_scope_and_stops_inline_creation(
    regions: Rig,
) -> None:
    """The instance down: all scopes switch at once; open_interaction fails fast; all drains."""
    rig = regions
    rig.fake.faults.add(RefuseConnections(), duration=60)
    await connect(rig, "c1", "erin")
    await rig.advance(30)
    assert {c.scope for c in of(rig, ModeChanged)} >= {"region:emea", "region:amer"}
    assert rig.engine.mode("default") is Mode.RESILIENCY
    with pytest.raises(ItsmUnavailable, match="resiliency mode"):
        await rig.engine.open_interaction("c1")
    await rig.engine.end("c1")
    await rig.advance(100)
    await rig.drained()
    assert rig.engine.mode("region:emea") is Mode.NORMAL
    assert rig.one(INTERACTION, "correlation_id", "c1")["state"] == "closed_complete"


async def test_status_is_a_json_ready_snapshot(regions: Rig) -> None:
    """status() carries components, modes, incidents, agents, journal and endpoints."""
    rig = regions
    await carrier(rig, ComponentStatus.DEGRADED)
    rig.engine.open_incident("Carrier maintenance tonight", Severity.MINOR, scopes=["region:amer"])
    status = await rig.engine.status()
    json.dumps(status)
    assert status["components"]["carrier-emea"]["status"] == "degraded"
    assert status["components"]["servicenow"]["scopes"] is None
    assert status["modes"] == {
        "default": "normal",
        "region:amer": "normal",
        "region:emea": "normal",
    }
    assert [i["title"] for i in status["incidents"]["open"]] == [
        "carrier-emea is degraded",
        "Carrier maintenance tonight",
    ]
    assert status["agents"] == {"idle": 3}
    assert status["servicenow"]["failover_in_progress"] is False
    assert status["journal"]["dead"] == 0
    assert status["calls"] == {"waiting": 0, "active": 0}
    resolved = rig.engine.resolve_incident(2)
    assert resolved.ended is not None


async def test_bad_continuity_input_is_refused_and_changes_nothing(regions: Rig) -> None:
    """Bad components, modes, notices, nodes and incidents raise typed errors; state stays."""
    rig = regions
    before = await rig.engine.status()
    with pytest.raises(InvalidInput, match="engine's own"):
        await rig.engine.report_component("servicenow", ComponentStatus.OUTAGE)
    with pytest.raises(InvalidInput, match="status"):
        await rig.engine.report_component("carrier", "outage")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="component"):
        await rig.engine.report_component("carrier^x", ComponentStatus.OUTAGE)
    with pytest.raises(InvalidInput, match="scopes"):
        await rig.engine.report_component("carrier", ComponentStatus.OUTAGE, scopes="emea")
    with pytest.raises(InvalidInput, match="mode"):
        await rig.engine.force_mode("region:emea", "resiliency")  # type: ignore[arg-type]
    with pytest.raises(UnknownAgent):
        await rig.engine.acknowledge("nobody")
    with pytest.raises(InvalidInput, match="notice_id"):
        await rig.engine.acknowledge("erin", 99)
    with pytest.raises(InvalidInput, match="node"):
        await rig.engine.heartbeat("site b")
    with pytest.raises(InvalidInput, match="title"):
        rig.engine.open_incident("", Severity.MAJOR)
    with pytest.raises(InvalidInput, match="incident_id"):
        rig.engine.resolve_incident(7)
    after = await rig.engine.status()
    assert {k: v for k, v in after.items() if k != "time"} == {
        k: v for k, v in before.items() if k != "time"
    }


# -- nodes -------------------------------------------------------------------------------------


@pytest.fixture
async def sites() -> AsyncIterator[Rig]:
    """rita works from site-b, watched by heartbeats (15 s timeout); lou is local."""
    config = make_config(node_timeout=15)
    async for rig in start(config, []):
        rig.engine.watch_node("site-b")
        for agent in (REMOTE, LOCAL):
            await rig.engine.login(agent, ready=True)
        await rig.engine.not_ready("lou")
        yield rig


async def test_a_node_that_loses_its_link_mid_offer_loses_the_offer(sites: Rig) -> None:
    """No heartbeat for 15 s: rita's ringing offer is withdrawn and goes to lou at once."""
    rig = sites
    await rig.advance(10)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    assert rig.channel.offered_to("c1") == ["rita"]
    await rig.engine.ready("lou")
    await rig.advance(4)
    assert rig.channel.offered_to("c1") == ["rita"]
    await rig.advance(1.5)
    (down,) = of(rig, NodeLinkChanged)
    assert (down.node, down.up) == ("site-b", False)
    assert ("rita", "c1", OfferOutcome.UNREACHABLE) in rig.channel.withdrawn
    assert rig.channel.offered_to("c1") == ["rita", "lou"]
    status = await rig.engine.status()
    assert status["nodes"] == {"site-b": "down"}
    assert status["agents"] == {"reserved": 1, "unreachable": 1}
    await rig.engine.heartbeat("site-b")
    assert of(rig, NodeLinkChanged)[-1].up is True
    assert rig.engine.router.agent("rita").eligible


async def test_a_node_check_function_keeps_the_link_up(sites: Rig) -> None:
    """A check that answers True counts as heartbeats; once it says False the node goes down."""
    rig = sites
    answers = {"ok": True}

    async def check() -> bool:
        return answers["ok"]

    rig.engine.watch_node("site-c", check=check, interval=5)
    await rig.advance(40)
    assert [c.node for c in of(rig, NodeLinkChanged)] == ["site-b"]
    answers["ok"] = False
    await rig.advance(20)
    assert [(c.node, c.up) for c in of(rig, NodeLinkChanged)][-1] == ("site-c", False)
    answers["ok"] = True
    await rig.advance(6)
    assert [(c.node, c.up) for c in of(rig, NodeLinkChanged)][-1] == ("site-c", True)


# -- endpoints ---------------------------------------------------------------------------------


async def test_failover_to_the_second_url_and_failback_to_the_primary() -> None:
    """The primary's route fails: records go by the secondary; once healthy, back to primary."""
    routes = Routes(httpx.MockTransport(lambda r: httpx.Response(500)), primary_down=True)
    config = make_config(instance=(PRIMARY, SECONDARY), failback_after=30, failback_probe_every=10)
    async for rig in start(config, [EMEA], routes):
        await connect(rig, "c1", "erin")
        await rig.engine.end("c1")
        await rig.drained()
        assert rig.one(INTERACTION, "correlation_id", "c1")["state"] == "closed_complete"
        (moved,) = of(rig, EndpointChanged)
        assert (moved.old, moved.new, moved.reason) == (PRIMARY, SECONDARY, "ConnectError")
        # Every request was answered by the secondary, and counted on its breaker only.
        assert rig.engine.drainer.breaker(PRIMARY).calls == 0
        # Two: the end of the call was folded into the creates of its records.
        assert rig.engine.drainer.breaker(SECONDARY).calls == 2
        # The primary's breaker, opened by the outage, must not read as a new one at failback.
        rig.engine.drainer.breaker(PRIMARY).force_open(rig.clock.now())
        status = (await rig.engine.status())["servicenow"]
        assert status["endpoint"] == SECONDARY
        assert status["failover_in_progress"] is True
        await rig.advance(60)
        assert len(of(rig, EndpointChanged)) == 1  # the primary still refuses
        routes.primary_down = False
        await rig.advance(29)
        assert len(of(rig, EndpointChanged)) == 1  # healthy, but not for 30 s yet
        await rig.advance(12)
        back = of(rig, EndpointChanged)[-1]
        assert (back.new, back.reason) == (PRIMARY, "failback")
        await rig.settle()
        assert of(rig, IncidentChanged) == []
        assert rig.engine.mode("region:emea") is Mode.NORMAL
        assert (await rig.engine.status())["servicenow"]["failover_in_progress"] is False
        routes.hosts.clear()
        await connect(rig, "c2", "erin")
        await rig.engine.end("c2")
        await rig.drained()
        assert set(routes.hosts) == {"primary.service-now.com"}
        assert len(rig.records(INTERACTION, "correlation_id", "c2")) == 1


# -- transfers ---------------------------------------------------------------------------------


async def transfer_with(answer: Any) -> tuple[Rig, BaseException | None]:
    """Transfer a connected call with an Interaction, the endpoint check doing `answer`.

    `answer` is what the check returns, an exception it raises, or "hang" to never answer.
    """

    async def check(target: str) -> bool:
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await rig.clock.sleep(3600)
        return bool(answer)

    config = make_config(transfer_check=check, transfer_check_timeout=2)
    async for rig in start(config, [EMEA]):
        await connect(rig, "c1", "erin")
        await rig.advance(2)
        await rig.engine.open_interaction("c1")
        transfer = asyncio.ensure_future(rig.engine.transfer("c1", "billing"))
        await rig.advance(3)
        return rig, transfer.exception()
    raise AssertionError("the engine did not start")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (False, "the endpoint check says it is down"),
        (RuntimeError("boom"), "the endpoint check failed (RuntimeError)"),
        ("hang", "the endpoint check did not answer within 2 s"),
    ],
)
async def test_a_transfer_to_a_target_found_down_is_refused(answer: Any, reason: str) -> None:
    """The check says no, fails, or hangs past its timeout on the engine's clock: refused."""
    rig, error = await transfer_with(answer)
    assert isinstance(error, TransferTargetUnavailable)
    assert reason in str(error)
    assert "'billing'" in str(error)
    assert rig.channel.transfers == []


async def test_a_transfer_to_a_target_found_up_goes_ahead() -> None:
    """The endpoint check says yes: the adapter is asked to transfer."""
    rig, error = await transfer_with(True)
    assert error is None
    assert [t[:3] for t in rig.channel.transfers] == [("erin", "c1", "billing")]
    assert of(rig, CallConnected)


async def test_status_counts_paused_agents_apart(regions: Rig) -> None:
    """An agent paused after a rejected offer is 'paused', not 'idle', in status()."""
    rig = regions
    for agent_id in ("emma", "alex"):
        await rig.engine.not_ready(agent_id)
    await rig.engine.call_arrived(rig.call("c1"))
    await rig.settle()
    await rig.engine.reject("c1", "erin")
    assert (await rig.engine.status())["agents"] == {"not_ready": 2, "paused": 1}
