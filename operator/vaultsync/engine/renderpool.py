"""Render templates and check Secret types in worker processes with memory, CPU and wall-clock limits.

Templates and the payloads that Secret types check (PEM, JSON) are written by tenants. The sandbox and its
budgets (:mod:`vaultsync.core.templates`) bound what they may cost, but a bug or a missed amplification in
those checks must not be able to exhaust the operator, which serves every namespace. So this is the backstop:
``shape_secret`` (compile, render, type checks) runs in a small pool of worker processes, each with

* ``RLIMIT_AS``: its address space (``VAULTSYNC_RENDER_MEMORY``); an allocation beyond it is a
  ``MemoryError`` in the worker (or, at worst, the worker's death), never the operator's;
* ``RLIMIT_CPU``: before each job the soft limit is raised to the CPU time used so far plus the job's share,
  so a job that spins past it gets SIGXCPU and the worker dies;
* a wall-clock limit per job (``VAULTSYNC_RENDER_TIMEOUT``): the parent kills the worker when it passes.

A worker that dies or is killed is replaced; only the sync whose job it was fails (``TemplateError``, or
``InvalidData`` for a type check without templates), with a message that names the limit and never a value.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot stop one task (a running future cannot be
cancelled, and there is no way to kill the process that runs it), and when a worker dies the whole executor
becomes ``BrokenProcessPool`` and fails every pending and later job; it also has no per-worker rlimits.
Hence this small pool: one socket pair per worker, read with asyncio streams (no thread waits on a worker),
and workers started with multiprocessing's "forkserver" context: never ``fork`` from this threaded asyncio
process (a child forked while another thread holds a lock can deadlock). The fork server preloads this
module (and with it Jinja2), so replacing a worker costs one ``fork`` of a small process, a few ms.

Workers cache compiled templates by the hash of their sources (LRU, bounded by total source size), so a
refresh does not compile again. Replies are JSON, not pickle: the worker is where tenant code runs, so the
parent does not unpickle what it sends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import pickle
import resource
import signal
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from vaultsync.core.errors import INVALID_DATA, TEMPLATE_ERROR, SyncError
from vaultsync.core.shaping import TYPE_REQUIREMENTS, SourceData, shape_secret
from vaultsync.core.spec import VaultSecretSpec
from vaultsync.core.templates import CompiledTemplates, compile_templates

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "RenderJob",
    "RenderPool",
    "TemplateCompileError",
    "needs_pool",
]

logger = logging.getLogger("vaultsync.render")

DEFAULT_CACHE_BYTES = 4 * 1024 * 1024
"""Template source (characters) whose compiled form a worker keeps; compiled code takes several times its
source, so this bounds the cache to some tens of MiB within the worker's memory limit."""
MAX_REPLY_BYTES = 16 * 1024 * 1024
"""Largest reply the parent reads from a worker (a Secret is at most 1 MiB; base64 and JSON add a third)."""
_HEADER = struct.Struct("!I")
_SPAWN_TIMEOUT = 30.0


def needs_pool(spec: VaultSecretSpec) -> bool:
    """Whether shaping this spec runs in the pool.

    Every spec with templates, and every Secret type that
    :func:`~vaultsync.core.shaping.validate_secret_type` checks (TLS PEM, docker JSON, basic-auth, ssh-auth):
    their cost depends on what a tenant wrote. A plain copy without templates (Opaque or another unchecked
    type) is shaped inline: merging, selecting keys, converting values (``json.dumps`` of non-strings) and
    base64-decoding are linear in the size of Vault's answer, which
    the Vault client caps (measured: about 10 ms per MiB, see docs/benchmarks.md), and a process hop would
    cost more than the work.
    """
    return bool(spec.templates) or spec.secret_type in TYPE_REQUIREMENTS


class TemplateCompileError(SyncError):
    """A template does not compile, and will not until the spec changes: cache the failure per generation."""


class Job(Protocol):
    """Work for a worker: returns the Secret's data or raises SyncError."""

    def run(self, cache: CompileCache) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class RenderJob:
    """``shape_secret`` of one sync: compile (cached), render, check the type and size."""

    spec: VaultSecretSpec
    sources: tuple[SourceData, ...]
    namespace: str
    name: str

    def run(self, cache: CompileCache) -> dict[str, bytes]:
        templates = cache.compile(self.spec.templates)
        return shape_secret(
            self.spec, self.sources, templates=templates, namespace=self.namespace, name=self.name
        )


# --------------------------------------------------------------------------------------------- worker side


@dataclass
class CompileCache:
    """Compiled templates (or their compile error) by the SHA-256 of their sources, LRU by source size."""

    limit: int
    entries: OrderedDict[str, tuple[int, CompiledTemplates | SyncError]] = field(default_factory=OrderedDict)
    size: int = 0
    compiles: int = 0

    def compile(self, templates: Mapping[str, str]) -> CompiledTemplates:
        digest = hashlib.sha256(
            json.dumps(sorted(templates.items())).encode("utf-8", "surrogatepass")
        ).hexdigest()
        hit = self.entries.get(digest)
        if hit is None:
            self.compiles += 1
            entry: CompiledTemplates | SyncError
            try:
                entry = compile_templates(templates)
            except SyncError as exc:
                entry = exc
            weight = sum(len(k) + len(v) for k, v in templates.items())
            hit = (weight, entry)
            if weight <= self.limit:
                self.entries[digest] = hit
                self.size += weight
                while self.size > self.limit:
                    _, (old_weight, _) = self.entries.popitem(last=False)
                    self.size -= old_weight
        else:
            self.entries.move_to_end(digest)
        result = hit[1]
        if isinstance(result, SyncError):
            raise TemplateCompileError(result.reason, result.message)
        return result


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _set_cpu_limit(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used) + math.ceil(seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _run_job(job: Job, cache: CompileCache, memory_bytes: int) -> bytes:
    before = cache.compiles
    reply: dict[str, Any] = {}
    try:
        data = job.run(cache)
    except SyncError as exc:
        compile_failed = isinstance(exc, TemplateCompileError)
        reply["error"] = {"reason": exc.reason, "message": exc.message, "compile": compile_failed}
    except MemoryError:
        message = (
            f"rendering needed more memory than a render worker may use ({memory_bytes // 2**20} MiB, "
            "VAULTSYNC_RENDER_MEMORY); simplify the template or use less data"
        )
        reply["error"] = {"reason": TEMPLATE_ERROR, "message": message, "compile": False}
    except Exception as exc:
        # shape_secret turns every failure it expects into SyncError; this is a bug, named by its type only.
        message = f"rendering failed unexpectedly ({type(exc).__name__})"
        reply["error"] = {"reason": TEMPLATE_ERROR, "message": message, "compile": False}
    else:
        reply["data"] = {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}
    reply["compiled"] = cache.compiles > before
    return json.dumps(reply).encode()


def _worker_main(sock: socket.socket, memory_bytes: int, cpu_seconds: float, cache_bytes: int) -> None:
    """A worker: limits itself, then runs jobs until the parent closes its socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole group: the parent stops us
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core (tenant data) otherwise
    # Hard limit too: code in the worker cannot raise it again.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # If the pod's memory cgroup fills up, the kernel's OOM killer takes a worker, not the operator.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adj:
        adj.write("1000")
    cache = CompileCache(cache_bytes)
    while True:
        try:
            (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
            job = pickle.loads(_recv_exact(sock, size))  # noqa: S301 - from the parent, which we trust
        except EOFError:
            return
        _set_cpu_limit(cpu_seconds)
        reply = _run_job(job, cache, memory_bytes)
        del job
        sock.sendall(_HEADER.pack(len(reply)) + reply)


# --------------------------------------------------------------------------------------------- parent side


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    jobs: int = 0


class RenderPool:
    """A fixed number of render workers; :meth:`shape` runs one job on an idle worker.

    Four by default, as many as the engine's template threads before: three VaultSecrets whose templates
    take their whole CPU budget do not hold up a fourth (tests/e2e/test_shaping.py). Idle, the fork server
    and four workers take about 40 MiB (proportional set size).

    Started with :meth:`start` (or at the first job) and stopped with :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 4,
        *,
        memory_bytes: int = 384 * 2**20,
        wall_seconds: float = 5.0,
        cpu_seconds: float | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.size = workers
        self.memory_bytes = memory_bytes
        self.wall_seconds = wall_seconds
        self.cpu_seconds = wall_seconds if cpu_seconds is None else cpu_seconds
        self.cache_bytes = cache_bytes
        self.compiles = 0
        """Templates compiled by the workers so far (cache misses), as the workers report."""
        self.replaced = 0
        """Workers that died or were killed and were replaced."""
        self.jobs = 0
        """Jobs sent to workers."""
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._started = False
        self._closed = False
        self._spawn_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for _ in range(self.size):
            self._idle.put_nowait(await self._spawn())

    async def close(self) -> None:
        """Stops every worker (running jobs fail)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        workers, self._all = list(self._all), set()
        for worker in workers:
            worker.writer.close()  # EOF: an idle worker exits by itself
        for worker in workers:
            await asyncio.to_thread(worker.process.join, 2.0)
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 2.0)
            worker.process.close()

    async def _spawn(self) -> _Worker:
        async with self._spawn_lock:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            parent, child = socket.socketpair()
            process = ctx.Process(
                target=_worker_main,
                args=(child, self.memory_bytes, self.cpu_seconds, self.cache_bytes),
                name="vaultsync-render",
                daemon=True,
            )
            try:
                # The first start launches the fork server (an interpreter importing Jinja2): not on the loop.
                await asyncio.wait_for(asyncio.to_thread(process.start), _SPAWN_TIMEOUT)
            finally:
                child.close()
            reader, writer = await asyncio.open_connection(sock=parent, limit=MAX_REPLY_BYTES)
            worker = _Worker(process=process, reader=reader, writer=writer)
            self._all.add(worker)
            return worker

    async def shape(self, job: Job, *, has_templates: bool = True) -> dict[str, bytes]:
        """Runs ``job`` on a worker; raises SyncError (a compile failure as :class:`TemplateCompileError`)."""
        if self._closed:
            raise SyncError(TEMPLATE_ERROR, "the operator is stopping; rendering is not possible now")
        await self.start()
        worker = await self._idle.get()
        self.jobs += 1
        payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        reason = TEMPLATE_ERROR if has_templates else INVALID_DATA
        what = "rendering" if has_templates else "checking the Secret type"
        started = time.monotonic()
        try:
            reply = await asyncio.wait_for(self._exchange(worker, payload), self.wall_seconds)
        except TimeoutError:
            self._retire(worker, kill=True)
            raise SyncError(
                reason,
                f"{what} took longer than {self.wall_seconds:g} s (VAULTSYNC_RENDER_TIMEOUT) and was "
                "stopped; simplify the template or use less data",
            ) from None
        except (EOFError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            elapsed = time.monotonic() - started
            code = await self._exit_code(worker)
            self._retire(worker, kill=True)
            raise SyncError(reason, self._death_message(what, code, elapsed)) from None
        except BaseException:
            # Cancelled (shutdown) or a bug: the worker's state is unknown, so it is replaced.
            self._retire(worker, kill=True)
            raise
        worker.jobs += 1
        self._idle.put_nowait(worker)
        return self._decode(reply, reason)

    @staticmethod
    async def _exchange(worker: _Worker, payload: bytes) -> bytes:
        worker.writer.write(_HEADER.pack(len(payload)) + payload)
        await worker.writer.drain()
        (size,) = _HEADER.unpack(await worker.reader.readexactly(_HEADER.size))
        if size > MAX_REPLY_BYTES:
            raise ValueError("reply too large")
        return await worker.reader.readexactly(size)

    async def _exit_code(self, worker: _Worker) -> int | None:
        """The exit code of a worker that closed its socket (it is exiting: wait a little for it)."""
        await asyncio.to_thread(worker.process.join, 1.0)
        return worker.process.exitcode

    def _death_message(self, what: str, code: int | None, elapsed: float) -> str:
        if code == -signal.SIGXCPU:
            return (
                f"{what} used more than {math.ceil(self.cpu_seconds)} s of CPU time (the render worker's "
                "limit) and was stopped; simplify the template or use less data"
            )
        return (
            f"the render worker stopped during {what} after {elapsed:.1f} s (exit code {code}), most "
            f"likely at its memory limit ({self.memory_bytes // 2**20} MiB, VAULTSYNC_RENDER_MEMORY); "
            "simplify the template or use less data"
        )

    def _decode(self, reply: bytes, reason: str) -> dict[str, bytes]:
        try:
            message = json.loads(reply)
            if message.get("compiled"):
                self.compiles += 1
            error = message.get("error")
            if error is None:
                data = message["data"]
                return {str(k): base64.b64decode(v, validate=True) for k, v in data.items()}
            failure = (str(error["reason"]), str(error["message"]), bool(error.get("compile")))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise SyncError(reason, "a render worker sent a reply that cannot be read") from None
        if failure[2]:
            raise TemplateCompileError(failure[0], failure[1])
        raise SyncError(failure[0], failure[1])

    def _retire(self, worker: _Worker, *, kill: bool) -> None:
        """Stops a worker and starts its replacement in the background."""
        self._all.discard(worker)
        self.replaced += 1
        if kill:
            with contextlib.suppress(OSError, ValueError):
                worker.process.kill()
        worker.writer.close()
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._replace(worker), name="render-worker-replace")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, old: _Worker) -> None:
        await asyncio.to_thread(old.process.join, 5.0)
        with contextlib.suppress(ValueError):
            old.process.close()
        delay = 0.1
        while not self._closed:
            try:
                worker = await self._spawn()
            except Exception as exc:
                logger.error("cannot start a render worker (%s); retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._idle.put_nowait(worker)
            return
