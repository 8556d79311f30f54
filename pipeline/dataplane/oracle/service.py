"""The service mapper (native/service.c): Services are not translated yet, so a new
connection to a Service VIP is dropped service_unsupported (never routed)."""

from __future__ import annotations

from ...model.addresses import ServiceVIP
from .sanity import Drop


def service_map(entry) -> None:
    """entry: what the address plane has at the destination."""
    if isinstance(entry, ServiceVIP):
        raise Drop("service_unsupported")
