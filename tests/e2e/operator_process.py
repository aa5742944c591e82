"""The real operator process for the end-to-end tests (it lives in the devstack, shared with ``bench/``)."""

from __future__ import annotations

from vaultsync.devstack.operator_process import OperatorProcess

__all__ = ["OperatorProcess"]
