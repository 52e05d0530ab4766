"""The smallest adapter: one agent, one call, and the records it leaves in ServiceNow.

Run it with ``python examples/quickstart.py``. A FakeServiceNow in this process stands in for
the instance; in production you drop `transport=` and give your instance's URL instead.
"""

from __future__ import annotations

import asyncio
import time

from callresilience import Agent, Call, Engine, EngineConfig, Notice, Offer, OfferOutcome
from callresilience.journal import EntryState
from callresilience.servicenow import BasicAuth
from callresilience.testing import FakeServiceNow


class PrintingChannel:
    """An `AgentChannel`: how the engine reaches agents. A real one calls the platform."""

    async def offer(self, agent: Agent, offer: Offer) -> None:
        print(f"ring {agent.agent_id}: call {offer.call.call_id} (attempt {offer.attempt})")

    async def withdraw(self, agent: Agent, call_id: str, reason: OfferOutcome) -> None:
        print(f"stop ringing {agent.agent_id}: call {call_id} ({reason.value})")

    async def notify(self, agent: Agent, notice: Notice) -> None:
        print(f"tell {agent.agent_id}: {notice.text}")

    async def transfer(self, agent: Agent, call_id: str, target: str, interaction: str) -> None:
        print(f"transfer call {call_id} from {agent.agent_id} to {target}")


async def main() -> None:
    # The fake instance checks these credentials like a real one would.
    fake = FakeServiceNow(user="integration", password="secret")  # noqa: S106
    config = EngineConfig(
        "https://example.service-now.com",
        auth=BasicAuth("integration", "secret"),
        journal=None,  # in memory; give a file path in production
    )
    async with Engine(config, PrintingChannel(), transport=fake.transport()) as engine:
        ada = Agent("ada", queues=["support"], user_sys_id="a" * 32)
        await engine.login(ada, ready=True)

        # `arrived` is on the engine's clock: time.monotonic() for the default system clock.
        await engine.call_arrived(Call("call-1", "+14155550100", "support", time.monotonic()))
        await asyncio.sleep(0.2)  # the phone rings; ada picks up
        await engine.accept("call-1", "ada")  # connected now, whatever ServiceNow is doing
        print("call-1 is", engine.router.call("call-1").state.value)
        await asyncio.sleep(1.0)  # they talk
        await engine.end("call-1")

        # The records are written in the background; wait until the journal is empty.
        while True:
            counts = await engine.journal.counts()
            if counts[EntryState.PENDING] == counts[EntryState.IN_FLIGHT] == 0:
                break
            await asyncio.sleep(0.05)

    (log,) = fake.records("sn_openframe_phone_log")
    (interaction,) = fake.records("interaction")
    linked = interaction["channel_metadata_document"] == log["sys_id"]
    print(f"phone log {log['sys_id']}: {log['start_time']}, {log['duration']} s")
    print(f"interaction {interaction['number']}: {interaction['state']}, linked: {linked}")


if __name__ == "__main__":
    asyncio.run(main())
