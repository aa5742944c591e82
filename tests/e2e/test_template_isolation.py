"""Issue 10 findings 2-4 end to end: hostile templates and TLS payloads in one namespace fail alone
(Ready=False, TemplateError / InvalidData naming the limit), a normal VaultSecret next to them syncs, the
render workers recover, and the operator process stays up.

An operator of the test's own, with a short render timeout (`VAULTSYNC_RENDER_TIMEOUT=500ms`) so that a spec
whose templates take seconds to compile is stopped by the wall-clock kill of its worker.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.e2e.conftest import ValueFactory
from tests.e2e.kube import create_vaultsecret, secret_data, wait_ready
from tests.e2e.ops_support import own_namespace
from tests.e2e.sync_support import leaks_in, own_operator
from vaultsync.devstack.stack import LocalStack
from vaultsync.devstack.vault_admin import VaultAdmin

SLOW_TEMPLATE = "{{ username }}" * (64 * 1024 // 14)
"""About 0.5 s to compile; four of them (256 KiB, the most a spec may have) about 2 s."""


def test_hostile_templates_fail_alone_and_the_operator_stays_up(
    stack: LocalStack,
    kube_api: client.ApiClient,
    vault_admin: VaultAdmin,
    operator_token_file: Path,
    tmp_path: Path,
    new_value: ValueFactory,
) -> None:
    with own_namespace(kube_api) as namespace:
        password = new_value()
        path = f"e2e/{namespace}/db"
        pem_payload = "-----BEGIN A-----\n" * (288 * 1024 // 18)
        vault_admin.kv_put(path, {"username": "app", "password": password, "p": pem_payload})
        log = tmp_path / "operator.log"
        with own_operator(
            stack, operator_token_file, namespace, log, VAULTSYNC_RENDER_TIMEOUT="500ms"
        ) as process:
            hostile = {
                # Finding 2: about 1 GB before the size check on the old code.
                "blowup": {"templates": {"x": "{{ ('%(a)1000000s' * 1000) % {'a': 'x'} }}"}},
                # Finding 3: one uninterruptible filter call per key, 40 keys.
                "wrap": {"templates": {f"k{i}": "{{ ('x' * 90000)|wordwrap(1)|length }}" for i in range(40)}},
                # Past the render timeout: the worker is killed and replaced.
                "slow": {"templates": {f"k{i}": SLOW_TEMPLATE for i in range(4)}},
                # Finding 4: the quadratic PEM scan, 288 KB of BEGIN lines.
                "pem": {
                    "type": "kubernetes.io/tls",
                    "templatesOnly": True,
                    "templates": {"tls.crt": "{{ p }}", "tls.key": "{{ p }}"},
                },
            }
            for name, fields in hostile.items():
                create_vaultsecret(kube_api, namespace, name, {"path": path, **fields})
            create_vaultsecret(
                kube_api,
                namespace,
                "normal",
                {
                    "path": path,
                    "keys": ["username"],
                    "templates": {"url": "db://{{ username }}:{{ password }}"},
                },
            )

            expected = {
                "blowup": ("TemplateError", ["'%' formatting: the result would be longer than 1,048,576"]),
                # The shared 1 s CPU budget, or (here first, as the test's timeout is shorter) the wall clock.
                "wrap": (
                    "TemplateError",
                    ["of CPU time (all templates of this VaultSecret together)", "took longer than 0.5 s"],
                ),
                "slow": ("TemplateError", ["took longer than 0.5 s (VAULTSYNC_RENDER_TIMEOUT)"]),
                "pem": ("InvalidData", ["'tls.crt' holds no PEM certificate"]),
            }
            for name, (reason, fragments) in expected.items():
                condition = wait_ready(kube_api, namespace, name, status="False", reason=reason, timeout=60)
                assert any(f in condition["message"] for f in fragments), (name, condition["message"])
                assert password not in condition["message"]

            wait_ready(kube_api, namespace, "normal", timeout=60)
            assert secret_data(kube_api, namespace, "normal") == {
                "url": f"db://app:{password}".encode(),
                "username": b"app",
            }
            # After the kills, the replaced workers serve new renders.
            create_vaultsecret(
                kube_api,
                namespace,
                "after",
                {"path": path, "templatesOnly": True, "templates": {"u": "{{ username }}!"}},
            )
            wait_ready(kube_api, namespace, "after", timeout=60)
            assert secret_data(kube_api, namespace, "after") == {"u": b"app!"}
            assert process.process is not None
            assert process.process.poll() is None  # the operator never went down
            assert "InternalError" not in process.log_text()
        assert leaks_in(process.log_text(), [password]) == []
