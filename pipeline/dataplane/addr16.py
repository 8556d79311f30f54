"""Addresses as the C tables see them: 16 bytes, IPv4 stored IPv4-mapped."""

from __future__ import annotations

import ipaddress

V4_MAPPED_PREFIX = 96


def addr16(ip) -> bytes:
    if not isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        ip = ipaddress.ip_address(ip)
    if ip.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + ip.packed
    return ip.packed


def from16(b: bytes, family: int):
    if family == 4:
        return ipaddress.IPv4Address(bytes(b[12:16]))
    return ipaddress.IPv6Address(bytes(b))


def prefix16(net) -> tuple[bytes, int]:
    """A network as (16-byte address, prefix length in the 128-bit space)."""
    if net.version == 4:
        return addr16(net.network_address), V4_MAPPED_PREFIX + net.prefixlen
    return net.network_address.packed, net.prefixlen
