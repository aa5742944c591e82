"""Watch streams: events are split into lines however long (a Secret near 1 MiB is one long line)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from vaultsync.kube.client import _lines


class ChunkedStream:
    """Stands in for aiohttp's StreamReader: hands out the payload in network-sized chunks."""

    def __init__(self, payload: bytes, size: int = 65536) -> None:
        self.chunks = [payload[i : i + size] for i in range(0, len(payload), size)]

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def test_long_and_split_lines_come_through_whole() -> None:
    big = json.dumps({"type": "MODIFIED", "object": {"data": {"k": "x" * 1_500_000}}}).encode()
    small = b'{"type": "ADDED"}'
    stream = ChunkedStream(big + b"\n\n" + small + b"\n" + small, size=4096)
    lines = [line async for line in _lines(stream)]  # type: ignore[arg-type]
    assert lines == [big, small, small]
