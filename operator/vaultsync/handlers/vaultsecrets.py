"""kopf handlers for VaultSecrets: every event only updates the engine's view and queues a sync."""

from __future__ import annotations

from typing import Any

import kopf

from vaultsync.kube.client import GROUP, PLURAL, VERSION
from vaultsync.runtime import Runtime


@kopf.on.event(GROUP, VERSION, PLURAL)
async def vaultsecret_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        runtime.engine.on_vaultsecret(event.get("type"), event["object"])
