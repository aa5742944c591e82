"""The benchmark: N VaultSecrets against the real local stack, measured from outside the operator.

Phases, in this order (see docs/benchmarks.md for what each figure means):

1. set-up: Vault policy and role for the benchmark, N + L + K KV v2 paths written, four namespaces
   (``bench-<id>-main`` / ``-lat`` / ``-rot`` / ``-raw``);
2. raw limit: ``bench.raw`` (no operator) reads the N paths and creates N Secrets in ``-raw``;
3. first sync: the operator is started (watching main, lat and rot), N VaultSecrets are created as fast as
   the API server takes them; done when a listing shows all Ready (the exact time is the API server's
   audit time of the last status write);
4. latency: L VaultSecrets created one at a time in ``-lat``: create -> Secret ADDED on a watch;
5. rotation (in the background of 6): K values changed in Vault; time until the Secrets hold them;
6. unchanged refresh: for every main path, one refresh cycle after its first-sync read: Vault reads, API
   writes in ``-main``, logins;
7. restart: SIGKILL, start again: time until Vault was read for every object again; API writes made;
8. memory: peak RSS (VmHWM) of the operator before the kill, and of the restarted one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import math
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.audit import AuditLog, KubeWrite, VaultRequest, kube_writes, vault_logins, vault_reads
from bench.raw import Http, HttpError, kube_http, vault_http
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import (
    configure_kubernetes_auth,
    configure_operator_identity,
    crds_dir,
)
from vaultsync.devstack.operator_process import OperatorProcess, operator_env
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin
from vaultsync.settings import Settings

BENCH_ROLE = "vaultsync-bench"
BENCH_POLICY = "vaultsync-bench"
BENCH_POLICY_HCL = 'path "secret/data/bench/*" { capabilities = ["read"] }\n'
GROUP_PATH = "/apis/vaultsync.io/v1alpha1"
JITTER = Settings().refresh_jitter
Say = Callable[[str], None]

# The targets (at N = 10,000).
TARGET_FIRST_SYNC_S = 60.0
TARGET_RATIO = 0.5
TARGET_P99_S = 2.0
TARGET_RESTART_S = 60.0
TARGET_RSS_MB = 200.0


def auto_refresh(n: int) -> float:
    """A refresh interval long enough that the latency phase ends before the first refreshes fall due,
    short enough that one full cycle is observed without waiting long."""
    if n <= 100:
        return 15.0
    return float(max(60, math.ceil(n * 0.018)))


@dataclass
class BenchConfig:
    n: int = 1000
    latency_samples: int = 50
    rotation_objects: int = 3
    rotation_interval: float = 30.0
    refresh: float | None = None  # seconds; None: auto_refresh(n)
    concurrency: int = 32  # of the harness's creates and of the raw program
    results_dir: Path = Path(__file__).resolve().parent / "results"
    operator_env: dict[str, str] = field(default_factory=dict)  # extra operator settings
    settle: float = 3.0  # seconds to wait for stray writes after a phase
    profile: bool = False  # record the operator with py-spy during the first sync and the restart
    keep_stack: bool = False  # keep the stack's work dir (logs, audit logs) of a stack started here
    timeout: float = 900.0  # of the first sync, and of waits in general

    @property
    def refresh_seconds(self) -> float:
        return self.refresh if self.refresh is not None else auto_refresh(self.n)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def rss_mb(operator: OperatorProcess) -> float | None:
    """The operator's resident set size now (VmRSS), in MiB."""
    if operator.process is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{operator.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def cpu_seconds(names: Mapping[int, str]) -> dict[str, float]:
    """CPU time (user + system) so far of the harness, its child processes (the stack's components; pids in
    ``names`` get that name, e.g. the operator) and of the whole machine (``machine``, from /proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    out: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(stat.parent.name)
        if pid != me and int(fields[1]) != me and pid not in names:
            continue
        name = "harness" if pid == me else names.get(pid, text[text.index("(") + 1 : text.rindex(")")])
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    with contextlib.suppress(OSError):
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        busy = sum(int(x) for i, x in enumerate(cpu[:8]) if i not in (3, 4))  # all but idle and iowait
        out["machine"] = busy / tick
    return out


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds used between two ``cpu_seconds`` snapshots; ``others``: whatever else ran on the machine
    (other users' processes)."""
    delta = {
        k: round(after[k] - before.get(k, 0.0), 2) for k in sorted(after) if after[k] > before.get(k, 0.0)
    }
    if "machine" in delta:
        ours = sum(v for k, v in delta.items() if k != "machine")
        delta["others"] = round(max(0.0, delta["machine"] - ours), 2)
    return delta


async def gather_limited(count: int, jobs: list[Callable[[], Awaitable[Any]]]) -> None:
    """Runs ``jobs`` with at most ``count`` at once."""
    pending = list(reversed(jobs))

    async def worker() -> None:
        while pending:
            await pending.pop()()

    await asyncio.gather(*(worker() for _ in range(count)))


class SecretWatch:
    """Watches the Secrets of one namespace and remembers when each (name, predicate) was first seen."""

    def __init__(self, config: Mapping[str, Any], namespace: str) -> None:
        self.config = config
        self.namespace = namespace
        self.waiters: list[tuple[Callable[[str, dict[str, Any]], bool], asyncio.Future[float]]] = []
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.started.wait(), 30)

    def wait(self, match: Callable[[str, dict[str, Any]], bool]) -> asyncio.Future[float]:
        """A future that gets the time.time() of the first event with ``match(type, secret)``."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append((match, future))
        return future

    async def _run(self) -> None:
        kube = kube_http(self.config, limit=2)
        path = f"/api/v1/namespaces/{self.namespace}/secrets"
        try:
            listing = await kube.request("GET", path, params={"limit": "1"})
            version = listing["metadata"]["resourceVersion"]
            while True:
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "600"}
                async with kube.session.get(
                    kube.base + path, params=params, timeout=aiohttp.ClientTimeout(total=None)
                ) as response:
                    self.started.set()
                    async for line in response.content:
                        now = time.time()
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        for waiter in list(self.waiters):
                            match, future = waiter
                            if not future.done() and match(event.get("type", ""), obj):
                                future.set_result(now)
                                self.waiters.remove(waiter)
        finally:
            await kube.close()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def secret_named(name: str, password: str | None = None) -> Callable[[str, dict[str, Any]], bool]:
    """Matches watch events of Secret ``name`` (holding base64 ``password`` when given)."""

    def match(kind: str, obj: dict[str, Any]) -> bool:
        if (obj.get("metadata") or {}).get("name") != name:
            return False
        return password is None or (obj.get("data") or {}).get("password") == password

    return match


def _ready(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


class Bench:
    def __init__(self, config: BenchConfig, stack: LocalStack, say: Say) -> None:
        self.config = config
        self.stack = stack
        self.say = say
        self.run_id = secrets.token_hex(3)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.stamp = stamp
        self.ns_main, self.ns_lat, self.ns_rot, self.ns_raw = (
            f"bench-{self.run_id}-{suffix}" for suffix in ("main", "lat", "rot", "raw")
        )
        self.prefix = f"bench/{self.run_id}"
        self.vault_prefix = f"secret/data/{self.prefix}/"
        self.main_paths = [f"{self.prefix}/main/s{i}" for i in range(config.n)]
        self.lat_paths = [f"{self.prefix}/lat/l{i}" for i in range(config.latency_samples)]
        self.rot_paths = [f"{self.prefix}/rot/r{i}" for i in range(config.rotation_objects)]
        self.kube_audit = AuditLog(stack.kube_audit_log)
        self.vault_audit = AuditLog(stack.vault_audit_log)
        self.conn: dict[str, Any] = {
            "api_url": stack.api_url,
            "admin_token": stack.admin_token,
            "ca_cert": str(stack.ca_cert),
            "vault_addr": stack.vault_addr,
            "vault_ca_cert": str(stack.vault_ca_cert) if stack.vault_ca_cert else None,
            "auth_mount": "kubernetes",
            "role": BENCH_ROLE,
        }
        self.results: dict[str, Any] = {}
        self.operators: list[OperatorProcess] = []
        self.rss: dict[str, float | None] = {}

    # -- helpers -----------------------------------------------------------------------------------------

    def _operator(self, index: int) -> OperatorProcess:
        env = {
            **operator_env(
                self.stack,
                Path(self.conn["token_file"]),
                watch=",".join((self.ns_main, self.ns_lat, self.ns_rot)),
                role=BENCH_ROLE,
            ),
            **self.config.operator_env,
        }
        log = self.config.results_dir / f"{self.stamp}-operator-{index}.log"
        process = OperatorProcess(env, log)
        self.operators.append(process)
        return process

    def _pids(self) -> dict[int, str]:
        return {p.process.pid: "operator" for p in self.operators if p.process is not None}

    def _vaultsecret(self, namespace: str, name: str, path: str, refresh: str) -> dict[str, Any]:
        return {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"path": path, "refreshInterval": refresh},
        }

    async def _create_vaultsecret(self, kube: Http, body: Mapping[str, Any]) -> None:
        namespace = body["metadata"]["namespace"]
        for attempt in range(5):
            try:
                await kube.request("POST", f"{GROUP_PATH}/namespaces/{namespace}/vaultsecrets", body)
                return
            except HttpError as exc:
                if exc.status not in (429, 500, 503, 504) or attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))

    async def _list_vaultsecrets(self, kube: Http, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = {"limit": "500"}
        while True:
            page = await kube.request(
                "GET", f"{GROUP_PATH}/namespaces/{namespace}/vaultsecrets", params=params
            )
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {"limit": "500", "continue": token}

    @contextlib.contextmanager
    def _profiling(self, operator: OperatorProcess, phase: str) -> Iterator[None]:
        """py-spy (``pip install py-spy``) samples the operator while the phase runs: collapsed stacks in
        ``<results>/<stamp>-<phase>.pyspy.txt`` (``--profile``)."""
        if not self.config.profile or operator.process is None:
            yield
            return
        out = self.config.results_dir / f"{self.stamp}-{phase}.pyspy.txt"
        spy_bin = str(Path(sys.executable).parent / "py-spy")
        pid = str(operator.process.pid)
        spy = subprocess.Popen(
            [
                spy_bin,
                "record",
                "--pid",
                pid,
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            self.say(f"profile of the {phase}: {out}")

    # -- phases ------------------------------------------------------------------------------------------

    async def setup(self) -> None:
        stack = self.stack
        api = kube_admin.api_client(stack.kubeconfig)
        vault = VaultAdmin.from_stack(stack)
        try:
            token_file = configure_operator_identity(
                stack,
                api,
                vault,
                policy=BENCH_POLICY,
                policy_hcl=BENCH_POLICY_HCL,
                role=BENCH_ROLE,
                token_path=stack.workdir / f"bench-{self.run_id}-operator-token",
            )
            for namespace in (self.ns_main, self.ns_lat, self.ns_rot, self.ns_raw):
                kube_admin.create_namespace(api, namespace)
        finally:
            api.close()  # type: ignore[no-untyped-call]
            vault.close()
        self.conn["token_file"] = str(token_file)
        began = time.monotonic()
        root = vault_http(self.conn, stack.vault_root_token, limit=self.config.concurrency)
        try:

            def put(path: str, i: int) -> Callable[[], Awaitable[Any]]:
                data = {"username": f"user-{i}", "password": secrets.token_urlsafe(12)}
                return lambda: root.request("POST", f"/v1/secret/data/{path}", {"data": data})

            paths = [*self.main_paths, *self.lat_paths, *self.rot_paths]
            await gather_limited(self.config.concurrency, [put(p, i) for i, p in enumerate(paths)])
        finally:
            await root.close()
        self.say(f"wrote {len(paths)} Vault paths in {time.monotonic() - began:.1f}s")

    def raw(self) -> None:
        n = self.config.n
        self.say(f"raw limit: reading {n} paths and creating {n} Secrets without the operator")
        config = {
            **self.conn,
            "paths": self.main_paths,
            "names": [f"s{i}" for i in range(n)],
            "namespace": self.ns_raw,
            "concurrency": self.config.concurrency,
        }
        cpu_before = cpu_seconds({})
        result = subprocess.run(
            [sys.executable, "-m", "bench.raw"],
            input=json.dumps(config),
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[1],
            timeout=self.config.timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bench.raw failed:\n{result.stderr[-3000:]}")
        raw = json.loads(result.stdout.strip().splitlines()[-1])
        raw["throughput_per_s"] = n / raw["seconds"]
        used = cpu_delta(cpu_before, cpu_seconds({}))
        # The raw program has exited: its CPU shows in the machine's total, not as a child of ours.
        used["raw program"] = raw["program_cpu_seconds"]
        used["others"] = round(max(0.0, used.get("others", 0.0) - raw["program_cpu_seconds"]), 2)
        raw["cpu_seconds"] = used
        self.results["raw"] = raw
        self.say(f"raw: {raw['seconds']:.2f}s, {raw['throughput_per_s']:.0f}/s")

    async def first_sync(self) -> None:
        n = self.config.n
        refresh = f"{self.config.refresh_seconds:g}s"
        kube = kube_http(self.conn, limit=self.config.concurrency)
        self.kube_offset0 = self.kube_audit.size()
        self.vault_offset0 = self.vault_audit.size()
        try:
            self.say(f"first sync: creating {n} VaultSecrets (refreshInterval {refresh})")
            cpu_before = cpu_seconds(self._pids())
            t0 = time.time()
            bodies = [
                self._vaultsecret(self.ns_main, f"s{i}", p, refresh) for i, p in enumerate(self.main_paths)
            ]
            await gather_limited(
                self.config.concurrency,
                [functools.partial(self._create_vaultsecret, kube, b) for b in bodies],
            )
            created = time.time()
            self.say(f"created {n} in {created - t0:.1f}s; waiting until all are Ready")
            deadline = time.monotonic() + self.config.timeout
            polls = 0
            # Listing N VaultSecrets costs the API server as much as hundreds of writes: list when the audit
            # log shows a status write for every object (or every 30 s), so that polling does not slow the
            # sync it measures.
            statused: set[str] = set()
            offset, listed, fresh = self.kube_offset0, time.monotonic(), False
            while True:
                for write in kube_writes(self.kube_audit, offset, (self.ns_main,)):
                    if write.subresource == "status" and write.code < 300:
                        statused.add(write.name)
                        fresh = True
                offset = self.kube_audit.next_offset
                if not (len(statused) >= n and fresh) and time.monotonic() - listed < 30:
                    await asyncio.sleep(0.25)
                    continue
                fresh = False
                items = await self._list_vaultsecrets(kube, self.ns_main)
                observed, listed = time.time(), time.monotonic()
                polls += 1
                ready = sum(1 for item in items if _ready(item))
                if ready == n:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"first sync: only {ready} of {n} Ready after {self.config.timeout}s")
        finally:
            await kube.close()
        status_writes = [
            w.at
            for w in kube_writes(self.kube_audit, self.kube_offset0, (self.ns_main,))
            if w.resource == "vaultsecrets" and w.subresource == "status" and w.at <= observed
        ]
        done = max(status_writes) if status_writes else observed
        self.t0, self.t1 = t0, done
        seconds = done - t0
        self.results["first_sync"] = {
            "cpu_seconds": cpu_delta(cpu_before, cpu_seconds(self._pids())),
            "seconds": seconds,
            "throughput_per_s": n / seconds,
            "create_seconds": created - t0,
            "observed_seconds": observed - t0,
            "polls": polls,
        }
        self.say(f"first sync: all {n} Ready in {seconds:.2f}s ({n / seconds:.0f}/s)")
        # When each main path was read for the first sync (the last read before all were Ready).
        first: dict[str, float] = {}
        for read in vault_reads(self.vault_audit, self.vault_offset0, self.vault_prefix + "main/"):
            if read.at <= done:
                first[read.path] = read.at
        self.first_reads = first
        self.logins_first_sync = vault_logins(self.vault_audit, self.vault_offset0, BENCH_ROLE)

    async def create_rotation_objects(self) -> None:
        kube = kube_http(self.conn, limit=4)
        interval = f"{self.config.rotation_interval:g}s"
        try:
            for i, path in enumerate(self.rot_paths):
                await self._create_vaultsecret(kube, self._vaultsecret(self.ns_rot, f"r{i}", path, interval))
            deadline = time.monotonic() + 120
            while sum(1 for item in await self._list_vaultsecrets(kube, self.ns_rot) if _ready(item)) < len(
                self.rot_paths
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError("rotation objects did not become Ready")
                await asyncio.sleep(0.5)
        finally:
            await kube.close()

    async def latency(self) -> None:
        samples = self.config.latency_samples
        self.say(f"latency: creating {samples} VaultSecrets one at a time, {self.config.n} in sync")
        watch = SecretWatch(self.conn, self.ns_lat)
        await watch.start()
        kube = kube_http(self.conn, limit=2)
        latencies: list[float] = []
        self.latency_window = (time.time(), 0.0)
        try:
            for i, path in enumerate(self.lat_paths):
                name = f"l{i}"
                written = watch.wait(secret_named(name))
                began = time.time()
                await self._create_vaultsecret(kube, self._vaultsecret(self.ns_lat, name, path, "1h"))
                at = await asyncio.wait_for(written, 60)
                latencies.append(at - began)
                await asyncio.sleep(random.uniform(0.05, 0.25))
        finally:
            await kube.close()
            await watch.stop()
        self.latency_window = (self.latency_window[0], time.time())
        self.results["latency"] = {
            "samples": len(latencies),
            "p50_s": percentile(latencies, 50),
            "p99_s": percentile(latencies, 99),
            "max_s": max(latencies),
            "mean_s": statistics.fmean(latencies),
        }
        lat = self.results["latency"]
        self.say(f"latency: p50 {lat['p50_s'] * 1000:.0f} ms, p99 {lat['p99_s'] * 1000:.0f} ms")

    async def rotation(self) -> None:
        interval = self.config.rotation_interval
        watch = SecretWatch(self.conn, self.ns_rot)
        await watch.start()
        root = vault_http(self.conn, self.stack.vault_root_token, limit=4)
        waits = []
        try:
            changed: list[float] = []
            for i, path in enumerate(self.rot_paths):
                value = secrets.token_urlsafe(12)
                encoded = base64.b64encode(value.encode()).decode()
                waits.append(watch.wait(secret_named(f"r{i}", password=encoded)))
                await root.request(
                    "POST", f"/v1/secret/data/{path}", {"data": {"username": "u", "password": value}}
                )
                changed.append(time.time())
            self.rotation_changed = changed
            updated = await asyncio.wait_for(asyncio.gather(*waits), interval * (1 + JITTER) + 60)
        finally:
            await root.close()
            await watch.stop()
        delays = [u - c for u, c in zip(updated, changed, strict=True)]
        periods = []
        reads = vault_reads(self.vault_audit, self.vault_offset0, self.vault_prefix + "rot/")
        for path, c in zip(self.rot_paths, changed, strict=True):
            times = sorted(r.at for r in reads if r.path == f"secret/data/{path}")
            before = [t for t in times if t <= c]
            after = [t for t in times if t > c]
            if before and after:
                periods.append(after[0] - before[-1])
        self.results["rotation"] = {
            "interval_s": interval,
            "bound_s": interval * (1 + JITTER),
            "delays_s": delays,
            "max_delay_s": max(delays),
            "refresh_periods_s": periods,
        }
        self.say(f"rotation: Secrets updated {', '.join(f'{d:.1f}s' for d in delays)} after the change")

    def unchanged_refresh(self) -> None:
        refresh = self.config.refresh_seconds
        slack = max(5.0, 0.1 * refresh)
        horizon = refresh * (1 + JITTER) + slack
        reads = vault_reads(self.vault_audit, self.vault_offset0, self.vault_prefix + "main/")
        in_window: dict[str, int] = {}
        identities: set[tuple[str, str]] = set()
        for read in reads:
            first = self.first_reads.get(read.path)
            if first is not None and first < read.at <= first + horizon:
                in_window[read.path] = in_window.get(read.path, 0) + 1
                identities.add((read.identity, read.path))
        end = max(self.first_reads.values()) + horizon
        writes = [
            w
            for w in kube_writes(self.kube_audit, self.kube_offset0, (self.ns_main,))
            if self.t1 < w.at <= end
        ]
        logins = [
            x for x in vault_logins(self.vault_audit, self.vault_offset0, BENCH_ROLE) if self.t1 < x.at <= end
        ]
        refresh_reads_during_latency = sum(
            1
            for read in reads
            if read.path in self.first_reads
            and self.latency_window[0] <= read.at
            and read.at <= self.latency_window[1]
            and read.at > self.first_reads[read.path]
        )
        self.results["unchanged_refresh"] = {
            "refresh_interval_s": refresh,
            "window_per_object_s": horizon,
            "due": len(self.first_reads),
            "vault_reads": sum(in_window.values()),
            "distinct_identity_paths": len(identities),
            "paths_read_more_than_once": sum(1 for c in in_window.values() if c > 1),
            "paths_not_refreshed": len(self.first_reads) - len(in_window),
            "kube_writes": len(writes),
            "kube_writes_by_kind": _by_kind(writes),
            "logins": len(logins),
            "refresh_reads_during_latency_phase": refresh_reads_during_latency,
        }
        logins_all = [
            x for x in vault_logins(self.vault_audit, self.vault_offset0, BENCH_ROLE) if x.at <= end
        ]
        self.results["logins_per_identity"] = _count_identities(logins_all)
        r = self.results["unchanged_refresh"]
        self.say(
            f"unchanged refresh: {r['vault_reads']} Vault reads for {r['due']} due, "
            f"{r['kube_writes']} API writes, {r['logins']} logins"
        )

    async def refresh_window(self) -> None:
        refresh = self.config.refresh_seconds
        slack = max(5.0, 0.1 * refresh)
        end = max(self.first_reads.values()) + refresh * (1 + JITTER) + slack + self.config.settle
        rotation = asyncio.create_task(self.rotation())
        wait = max(0.0, end - time.time())
        self.say(f"waiting {wait:.0f}s for one refresh cycle of every object (and the rotation)")
        await asyncio.sleep(wait)
        await rotation

    async def restart(self, operator: OperatorProcess) -> OperatorProcess:
        objects = {f"secret/data/{p}" for p in (*self.main_paths, *self.lat_paths, *self.rot_paths)}
        peak = operator.peak_rss_bytes()
        self.rss["before_restart"] = rss_mb(operator)
        self.results["memory"] = {"peak_rss_mb": peak / 2**20 if peak else None, "rss_mb": self.rss}
        kube_offset = self.kube_audit.size()
        vault_offset = self.vault_audit.size()
        self.say(f"restart: SIGKILL and start again with {len(objects)} objects in sync")
        killed = time.time()
        operator.kill()
        second = self._operator(2)
        started = time.time()
        cpu_before = cpu_seconds({})
        second.start(wait_ready=False)
        with self._profiling(second, "restart"):
            seen: dict[str, float] = {}
            offset = vault_offset
            deadline = time.monotonic() + self.config.timeout
            while len(seen) < len(objects):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"restart: only {len(seen)} of {len(objects)} re-verified")
                if second.process is not None and second.process.poll() is not None:
                    raise RuntimeError(f"the restarted operator exited; see {second.log_path}")
                await asyncio.sleep(0.5)
                for read in vault_reads(self.vault_audit, offset, self.vault_prefix):
                    if read.path in objects:
                        seen.setdefault(read.path, read.at)
                offset = self.vault_audit.next_offset
            done = max(seen.values())
        await asyncio.sleep(self.config.settle)
        writes = kube_writes(self.kube_audit, kube_offset, (self.ns_main, self.ns_lat, self.ns_rot))
        logins = vault_logins(self.vault_audit, vault_offset, BENCH_ROLE)
        reads = vault_reads(self.vault_audit, vault_offset, self.vault_prefix)
        peak2 = second.peak_rss_bytes()
        self.results["memory"]["peak_rss_mb_restarted"] = peak2 / 2**20 if peak2 else None
        self.results["restart"] = {
            "objects": len(objects),
            "reverified_s": done - killed,
            "reverified_from_start_s": done - started,
            "cpu_seconds": cpu_delta(cpu_before, cpu_seconds(self._pids())),
            "kube_writes": len(writes),
            "kube_writes_by_kind": _by_kind(writes),
            "vault_reads": len(reads),
            "logins_per_identity": _count_identities(logins),
        }
        r = self.results["restart"]
        self.say(
            f"restart: all {r['objects']} re-verified {r['reverified_s']:.1f}s after the kill; "
            f"{r['kube_writes']} API writes"
        )
        return second

    async def run(self) -> dict[str, Any]:
        config = self.config
        self.results.update(
            {
                "n": config.n,
                "run_id": self.run_id,
                "started_at": self.stamp,
                "machine": machine(),
                "config": {
                    "refresh_interval_s": config.refresh_seconds,
                    "rotation_interval_s": config.rotation_interval,
                    "latency_samples": config.latency_samples,
                    "rotation_objects": config.rotation_objects,
                    "harness_concurrency": config.concurrency,
                    "operator_env": config.operator_env,
                },
            }
        )
        await self.setup()
        self.raw()
        operator = self._operator(1)
        try:
            operator.start()
            with self._profiling(operator, "first-sync"):
                await self.first_sync()
            self.rss["after_first_sync"] = rss_mb(operator)
            await self.create_rotation_objects()
            await self.latency()
            self.rss["after_latency"] = rss_mb(operator)
            await self.refresh_window()
            self.unchanged_refresh()
            operator = await self.restart(operator)
        finally:
            for process in self.operators:
                process.stop()
        first, raw = self.results["first_sync"], self.results["raw"]
        self.results["ratio_operator_raw"] = first["throughput_per_s"] / raw["throughput_per_s"]
        self.results["targets"] = targets(self.results)
        return self.results

    def cleanup(self) -> None:
        api = kube_admin.api_client(self.stack.kubeconfig)
        try:
            for namespace in (self.ns_main, self.ns_lat, self.ns_rot, self.ns_raw):
                kube_admin.delete_namespace(api, namespace)
        finally:
            api.close()  # type: ignore[no-untyped-call]


def _by_kind(writes: list[KubeWrite]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for w in writes:
        kind = f"{w.verb} {w.resource}" + (f"/{w.subresource}" if w.subresource else "")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _count_identities(requests: list[VaultRequest]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        counts[r.identity] = counts.get(r.identity, 0) + 1
    return counts


def targets(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the issue: the figure, the bound and whether it is met."""
    first = results["first_sync"]
    refresh = results["unchanged_refresh"]
    restart = results["restart"]
    memory = results["memory"]
    rss = max(v for v in (memory.get("peak_rss_mb"), memory.get("peak_rss_mb_restarted")) if v is not None)
    logins = results["logins_per_identity"]
    return {
        "first_sync_s": {
            "value": first["seconds"],
            "target": f"<= {TARGET_FIRST_SYNC_S:g}",
            "met": first["seconds"] <= TARGET_FIRST_SYNC_S,
        },
        "ratio_operator_raw": {
            "value": results["ratio_operator_raw"],
            "target": f">= {TARGET_RATIO:g}",
            "met": results["ratio_operator_raw"] >= TARGET_RATIO,
        },
        "latency_p99_s": {
            "value": results["latency"]["p99_s"],
            "target": f"< {TARGET_P99_S:g}",
            "met": results["latency"]["p99_s"] < TARGET_P99_S,
        },
        "refresh_kube_writes": {
            "value": refresh["kube_writes"],
            "target": "0",
            "met": refresh["kube_writes"] == 0,
        },
        "refresh_vault_reads": {
            "value": refresh["vault_reads"],
            "target": f"= {refresh['due']} due",
            "met": refresh["vault_reads"] == refresh["due"] == refresh["distinct_identity_paths"],
        },
        "logins_per_identity": {
            "value": logins,
            "target": "1 each",
            "met": bool(logins) and all(v == 1 for v in logins.values()),
        },
        "restart_kube_writes": {
            "value": restart["kube_writes"],
            "target": "0",
            "met": restart["kube_writes"] == 0,
        },
        "restart_reverified_s": {
            "value": restart["reverified_s"],
            "target": f"<= {TARGET_RESTART_S:g}",
            "met": restart["reverified_s"] <= TARGET_RESTART_S,
        },
        "peak_rss_mb": {"value": rss, "target": f"<= {TARGET_RSS_MB:g}", "met": rss <= TARGET_RSS_MB},
    }


def table(results: Mapping[str, Any]) -> str:
    """The figures as one plain-text table."""
    first, raw, lat = results["first_sync"], results["raw"], results["latency"]
    rot, ref, rst, mem = (
        results["rotation"],
        results["unchanged_refresh"],
        results["restart"],
        results["memory"],
    )
    met = {k: ("yes" if v["met"] else "NO") for k, v in results["targets"].items()}
    rss = max(v for v in (mem.get("peak_rss_mb"), mem.get("peak_rss_mb_restarted")) if v is not None)
    rows = [
        (
            "first sync: all Ready",
            f"{first['seconds']:.1f} s ({first['throughput_per_s']:.0f}/s; "
            f"creates took {first['create_seconds']:.1f} s)",
            "<= 60 s",
            met["first_sync_s"],
        ),
        ("raw limit (no operator)", f"{raw['seconds']:.1f} s ({raw['throughput_per_s']:.0f}/s)", "", ""),
        (
            "operator / raw throughput",
            f"{results['ratio_operator_raw']:.2f}",
            ">= 0.5",
            met["ratio_operator_raw"],
        ),
        (
            f"create -> Secret, {lat['samples']} at steady state",
            f"p50 {lat['p50_s'] * 1000:.0f} ms, p99 {lat['p99_s'] * 1000:.0f} ms",
            "p99 < 2 s",
            met["latency_p99_s"],
        ),
        (
            f"rotation, refreshInterval {rot['interval_s']:g}s",
            f"max {rot['max_delay_s']:.1f} s after the change (bound {rot['bound_s']:.0f} s)",
            "",
            "",
        ),
        ("unchanged refresh: API writes", f"{ref['kube_writes']}", "0", met["refresh_kube_writes"]),
        (
            "unchanged refresh: Vault reads",
            f"{ref['vault_reads']} ({ref['distinct_identity_paths']} distinct identity+path; "
            f"{ref['due']} due)",
            "= due",
            met["refresh_vault_reads"],
        ),
        (
            "Vault logins per identity",
            ", ".join(f"{v}" for v in results["logins_per_identity"].values())
            + f" (refresh cycle: {ref['logins']})",
            "1",
            met["logins_per_identity"],
        ),
        (
            f"restart: {rst['objects']} re-verified",
            f"{rst['reverified_s']:.1f} s after SIGKILL ({rst['reverified_from_start_s']:.1f} s after start)",
            "<= 60 s",
            met["restart_reverified_s"],
        ),
        ("restart: API writes", f"{rst['kube_writes']}", "0", met["restart_kube_writes"]),
        ("operator peak RSS", f"{rss:.0f} MB", "<= 200 MB", met["peak_rss_mb"]),
    ]
    head = ("figure", f"N = {results['n']}", "target", "met")
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def write_results(results: Mapping[str, Any], results_dir: Path, stamp: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


async def run_bench(config: BenchConfig, stack: LocalStack | None = None, say: Say = print) -> dict[str, Any]:
    """Runs every phase and writes ``<results_dir>/<timestamp>.json``; returns the results.

    With ``stack`` given (e.g. the tests' session stack), it must have the VaultSecret CRD and OpenBao's
    kubernetes auth method configured (``configure_kubernetes_auth``); the benchmark's namespaces are deleted
    at the end. Otherwise a LocalStack is started and stopped here."""
    config.results_dir.mkdir(parents=True, exist_ok=True)
    if stack is not None:
        bench = Bench(config, stack, say)
        try:
            results = await bench.run()
        finally:
            bench.cleanup()
    else:
        with LocalStack(crds=[crds_dir()], printer=say, keep_workdir=config.keep_stack) as own:
            api = kube_admin.api_client(own.kubeconfig)
            vault = VaultAdmin.from_stack(own)
            try:
                configure_kubernetes_auth(own, api, vault)
            finally:
                api.close()  # type: ignore[no-untyped-call]
                vault.close()
            bench = Bench(config, own, say)
            results = await bench.run()
    results["results_file"] = str(write_results(results, config.results_dir, bench.stamp))
    say(table(results))
    say(f"results: {results['results_file']}")
    return results
