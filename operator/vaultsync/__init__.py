"""vaultsync: keeps native Kubernetes Secrets in sync with HashiCorp Vault and OpenBao."""

__version__ = "0.1.0"
