"""The bearer token a ModelDeployment's servers require on their monitoring port.

Derived from the ModelDeployment's UID, which only those who may read objects in its namespace
see: the operator recomputes it for every gathering, nothing is stored, and another tenant's pods
can neither read a server's held feedback nor inject labels into it.
"""

from __future__ import annotations

import hashlib

HEADER = "Authorization"
ENV = "MODELYARD_MONITOR_TOKEN"


def for_deployment(uid: str) -> str:
    return hashlib.sha256(f"modelyard.dev/monitoring:{uid}".encode()).hexdigest()


def header_value(token: str) -> str:
    return f"Bearer {token}"
