"""vaultsync's benchmark: N VaultSecrets on the real local stack, measured from outside the operator.

Run ``.venv/bin/python -m bench --n 1000`` from the repository root (see docs/benchmarks.md).
"""
