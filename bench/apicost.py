"""What the API server spends per request type: N requests of each kind the benchmark's first sync makes,
32 at a time, on a fresh local stack, with the CPU seconds of kube-apiserver and etcd for each::

    .venv/bin/python -m bench.apicost --n 1000

The first sync of one VaultSecret costs: its create (the user's), the Secret's create, the status patch
and an Event (the operator's); the raw program only creates the Secret.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import secrets
import time
from collections.abc import Awaitable, Callable

from bench.harness import GROUP_PATH, cpu_delta, cpu_seconds, gather_limited
from bench.raw import Http, kube_http
from vaultsync.devstack import kube_admin
from vaultsync.devstack.demo import crds_dir
from vaultsync.devstack.stack import LocalStack

NAMESPACE = "apicost"
NOW = "2026-01-01T00:00:00Z"


def _requests(kube: Http) -> dict[str, Callable[[int], Awaitable[object]]]:
    vaultsecrets = f"{GROUP_PATH}/namespaces/{NAMESPACE}/vaultsecrets"

    def create_vaultsecret(i: int) -> Awaitable[object]:
        body = {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": f"v{i}"},
            "spec": {"path": f"bench/apicost/s{i}", "refreshInterval": "1h"},
        }
        return kube.request("POST", vaultsecrets, body)

    def get_missing_secret(i: int) -> Awaitable[object]:
        return kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/s{i}", ok=(404,))

    def create_secret(i: int) -> Awaitable[object]:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"s{i}",
                "labels": {"app.kubernetes.io/managed-by": "vaultsync"},
                "annotations": {"vaultsync.io/owner": f"v{i}"},
            },
            "type": "Opaque",
            "data": {"password": base64.b64encode(secrets.token_bytes(12)).decode()},
        }
        return kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", body)

    def patch_status(i: int) -> Awaitable[object]:
        condition = {
            "type": "Ready",
            "status": "True",
            "reason": "Synced",
            "message": f"Secret s{i} holds what Vault returned",
            "lastTransitionTime": NOW,
            "observedGeneration": 1,
        }
        status = {
            "observedGeneration": 1,
            "secretName": f"s{i}",
            "secretMAC": "hmac-sha256:" + secrets.token_hex(32),
            "vaultVersion": {f"secret/bench/apicost/s{i}": 1},
            "lastSyncTime": NOW,
            "conditions": [condition],
        }
        return kube.request(
            "PATCH",
            f"{vaultsecrets}/v{i}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )

    def create_event(i: int) -> Awaitable[object]:
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"v{i}."},
            "involvedObject": {
                "apiVersion": "vaultsync.io/v1alpha1",
                "kind": "VaultSecret",
                "name": f"v{i}",
                "namespace": NAMESPACE,
            },
            "type": "Normal",
            "reason": "Synced",
            "message": f"created Secret s{i} from Vault",
            "firstTimestamp": NOW,
            "lastTimestamp": NOW,
            "count": 1,
            "source": {"component": "vaultsync"},
        }
        return kube.request("POST", f"/api/v1/namespaces/{NAMESPACE}/events", body)

    return {
        "create VaultSecret": create_vaultsecret,
        "GET Secret (404)": get_missing_secret,
        "create Secret": create_secret,
        "PATCH VaultSecret status": patch_status,
        "create Event": create_event,
    }


async def measure(stack: LocalStack, n: int) -> None:
    api = kube_admin.api_client(stack.kubeconfig)
    try:
        kube_admin.create_namespace(api, NAMESPACE)
    finally:
        api.close()  # type: ignore[no-untyped-call]
    conn = {"api_url": stack.api_url, "admin_token": stack.admin_token, "ca_cert": str(stack.ca_cert)}
    kube = kube_http(conn, limit=32)
    print(f"{'request':26}  {'wall s':>7}  {'apiserver ms/req':>16}  {'etcd ms/req':>11}")
    try:
        for name, request in _requests(kube).items():
            before = cpu_seconds({})
            started = time.monotonic()
            await gather_limited(32, [functools.partial(request, i) for i in range(n)])
            wall = time.monotonic() - started
            used = cpu_delta(before, cpu_seconds({}))
            api_ms = used.get("kube-apiserver", 0.0) * 1000 / n
            etcd_ms = used.get("etcd", 0.0) * 1000 / n
            print(f"{name:26}  {wall:7.2f}  {api_ms:16.2f}  {etcd_ms:11.2f}", flush=True)
        before = cpu_seconds({})
        listed = await kube.request("GET", f"{GROUP_PATH}/namespaces/{NAMESPACE}/vaultsecrets")
        used = cpu_delta(before, cpu_seconds({}))
        count = len(listed["items"])
        print(f"list {count} VaultSecrets: apiserver {used.get('kube-apiserver', 0.0):.2f} CPU-s")
    finally:
        await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.apicost", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="requests of each kind (default 1000)")
    args = parser.parse_args()
    with LocalStack(crds=[crds_dir()], printer=lambda line: None) as stack:
        asyncio.run(measure(stack, args.n))


if __name__ == "__main__":
    main()
