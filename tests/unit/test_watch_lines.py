"""Watch streams: events are split into lines however long (a Secret near 1 MiB is one long line)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from vaultsync.kube.client import _lines


async def test_long_and_split_lines_come_through_whole() -> None:
    loop = asyncio.get_running_loop()
    protocol = aiohttp.BaseProtocol(loop)
    stream = aiohttp.StreamReader(protocol, limit=2**16, loop=loop)
    big = json.dumps({"type": "MODIFIED", "object": {"data": {"k": "x" * 1_500_000}}}).encode()
    small = b'{"type": "ADDED"}'
    payload = big + b"\n\n" + small + b"\n" + small
    for start in range(0, len(payload), 65536):
        stream.feed_data(payload[start : start + 65536])
    stream.feed_eof()
    lines = [line async for line in _lines(stream)]
    assert lines == [big, small, small]
