"""The API of vaultsync's custom resources, declared once (see :mod:`vaultsync.api.schema`)."""

from __future__ import annotations

from .schema import Kind
from .vaultsecret import VAULT_SECRET

KINDS: tuple[Kind, ...] = (VAULT_SECRET,)
"""Every kind, in the order of their CRD files and docs."""

__all__ = ["KINDS", "VAULT_SECRET"]
