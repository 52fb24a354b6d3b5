"""PingSource sinks follow the destination policy as deliveries do: the scheduler's session
resolves a sink's name itself and refuses it when an address it resolves to is denied (aiohttp
then connects only to addresses that were checked); an address written in the URL is refused by
the scheduler before it sends (`DestinationPolicy.denied_url`, tested with the policy)."""

from __future__ import annotations

import aiohttp
import pytest

from channel.destinations import DestinationPolicy, parse_rules
from channel.sources.scheduler import sink_session
from support.sinks import RecordingSink


async def test_a_name_resolving_to_a_denied_address_gets_no_ping() -> None:
    sink = await RecordingSink().start()
    try:
        denied = DestinationPolicy(parse_rules(f"127.0.0.1/32:{sink.port},[::1]:{sink.port}"))
        async with sink_session(denied, None) as session:
            with pytest.raises(aiohttp.ClientConnectorError, match="denied by the destination policy"):
                await session.post(f"http://localhost:{sink.port}/", data=b"{}")
        assert sink.requests == []

        other_port = DestinationPolicy(parse_rules(f"127.0.0.1/32:{sink.port + 1}"))
        async with (
            sink_session(other_port, None) as session,
            session.post(f"http://localhost:{sink.port}/", data=b"{}") as response,
        ):
            assert response.status == 202
        assert len(sink.requests) == 1
    finally:
        await sink.close()
