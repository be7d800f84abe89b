"""The agent's MQTT client keeps an idle connection alive with fewer wake-ups.

Against the suite's real Mosquitto; nothing is faked.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from edge_agent.uplink.quiet_client import QuietClient, housekeeping_interval
from govedge_testbed import Mosquitto

KEEPALIVE_S = 8
# Longer than the 1.5 keep-alives after which the broker drops a silent client.
IDLE_S = 13.0


def test_the_interval_is_a_quarter_of_the_keepalive() -> None:
    assert housekeeping_interval(30) == 7.5
    assert housekeeping_interval(0) == 60.0  # keep-alive off


@pytest.mark.timeout(60)
def test_an_idle_connection_stays_up_with_few_keepalive_checks(broker: Mosquitto) -> None:
    """Idle for longer than the broker waits for a silent client, the connection is
    still up (the pings went out in time), and the keep-alive check ran about every
    quarter keep-alive instead of every second (aiomqtt's loop: issue 17)."""

    async def scenario() -> None:
        client = QuietClient(
            "127.0.0.1", broker.port, identifier="quiet-client-test", keepalive=KEEPALIVE_S
        )
        checks = 0
        async with client:
            paho = client._client
            loop_misc = paho.loop_misc

            def counted() -> aiomqtt.client.mqtt.MQTTErrorCode:
                nonlocal checks
                checks += 1
                return loop_misc()

            paho.loop_misc = counted  # type: ignore[method-assign]
            await client.subscribe("quiet/echo", qos=1)
            await asyncio.sleep(IDLE_S)
            assert paho.is_connected(), "the broker dropped the idle client"
            await client.publish("quiet/echo", b"still here", qos=1)
            async with asyncio.timeout(10):
                async for message in client.messages:
                    assert message.payload == b"still here"
                    break
        # Every 2 s over 13 s; the old loop checked every second (13 times).
        assert 1 <= checks <= IDLE_S / housekeeping_interval(KEEPALIVE_S) + 2

    asyncio.run(scenario())


@pytest.mark.timeout(20)
def test_a_stop_that_meets_an_acknowledgement_still_stops_the_waiter() -> None:
    """The agent's stop cancels its publishing loops. When the broker's acknowledgement
    arrives in the same loop turn as that cancel, the wait must still end cancelled:
    aiomqtt's ``asyncio.wait_for`` on Python 3.11 returned normally instead, the loop
    published on, and the agent's stop hung until it was killed. (No broker is needed:
    the acknowledgement is the future the client's wait resolves.)"""

    async def scenario() -> None:
        client = QuietClient("127.0.0.1", 1, identifier="quiet-client-cancel")
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = asyncio.ensure_future(client._wait_for(acknowledged, timeout=5))
        await asyncio.sleep(0)  # the waiter now waits for the acknowledgement
        acknowledged.set_result(None)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())


@pytest.mark.timeout(20)
def test_an_acknowledgement_that_never_comes_is_an_mqtt_error() -> None:
    async def scenario() -> None:
        client = QuietClient("127.0.0.1", 1, identifier="quiet-client-timeout")
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pytest.raises(aiomqtt.MqttError, match="timed out"):
            await client._wait_for(never, timeout=0.05)
        assert never.cancelled()

    asyncio.run(scenario())
