"""Connection details for the Kubernetes API: in-cluster inside a pod, otherwise KUBECONFIG."""

from __future__ import annotations

import ssl
from typing import Any

import kubernetes


def load_connection() -> tuple[str, dict[str, str], ssl.SSLContext | None]:
    """(server URL, auth headers, TLS context), loaded afresh on every call (tokens rotate)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    hook: Any = configuration.refresh_api_key_hook
    if hook is not None:
        hook(configuration)
    headers: dict[str, str] = {}
    auth = configuration.get_api_key_with_prefix("authorization") or configuration.get_api_key_with_prefix(
        "BearerToken"
    )
    if auth:
        headers["Authorization"] = auth
    elif configuration.username and configuration.password:
        headers["Authorization"] = str(configuration.get_basic_auth_token())
    context: ssl.SSLContext | None = None
    if str(configuration.host).startswith("https"):
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return str(configuration.host), headers, context


async def connection() -> tuple[str, dict[str, str], Any]:
    return load_connection()
