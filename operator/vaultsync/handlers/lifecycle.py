"""kopf handlers for the operator's own lifecycle: configure kopf, start and stop the runtime."""

from __future__ import annotations

import gc
from typing import Any

import kopf

from vaultsync.runtime import Runtime, StartupError
from vaultsync.settings import Settings

GC_THRESHOLDS = (10_000, 10, 10)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Handlers here only watch: kopf must not write its own bookkeeping onto VaultSecrets, nor post an Event
    # per log line (the engine posts its own Events with stable reasons).
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # No cap on kopf's per-object workers: each lingers idle_timeout (5 s) after its last event, so a cap of
    # N admits only N / 5 new objects per second (64 -> 13/s).
    settings.batching.worker_limit = None
    # Everything imported so far lives as long as the process: keep it out of the garbage collector's scans,
    # and collect the young generation less often (each pass walks what a burst of syncs just allocated).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    operator_settings: Settings = memo["settings"]
    try:
        memo["runtime"] = await Runtime.start(operator_settings)
    except StartupError as exc:
        raise kopf.PermanentError(str(exc)) from None


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()
