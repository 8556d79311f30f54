"""Runs a capture through the datapath, and optionally through the oracle alongside
it (`--check`): the offline way to verify a trace packet by packet.

Packets are batched by the driver's batcher (consecutive packets less than
`window_ns` apart, at most 256 a batch); a batch runs with the timestamp of its first
packet as `now`, and the oracle is given the same `now`, so both see the same clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from .compiler import Compiled
from .constants import PORT_UNKNOWN, PORT_UPLINK
from .driver import Datapath, Packet
from .pcap import LINKTYPE_ETHERNET, CapturedPacket
from .results import Result


class ReplayError(Exception):
    """Bad input (a capture netsem cannot attribute to ports): exit 2."""


@dataclass
class Replayed:
    index: int
    packet: CapturedPacket
    in_port: int
    now: int
    result: Result
    oracle: Optional[Result] = None

    @property
    def agrees(self) -> bool:
        return self.oracle is None or self.oracle.comparable() == self.result.comparable()


def arrival_port(compiled: Compiled, iface: Optional[str]) -> int:
    if iface is None:
        return PORT_UNKNOWN
    if iface == "uplink":
        return PORT_UPLINK
    port = compiled.port_named(iface)
    if port is not None:
        return port
    names = sorted(str(a) for a in compiled.attachments.values())
    raise ReplayError(f"capture interface {iface!r} is neither 'uplink' nor a pod of the manifests "
                      f"(pods: {', '.join(names) or 'none'})")


def replay(compiled: Compiled, packets: Iterator[CapturedPacket], check: bool = False,
           window_ns: int = 1_000_000, max_batch: int = 256, recheck: bool = False,
           datapath: Optional[Datapath] = None) -> Iterator[Replayed]:
    from .oracle import OraclePipeline

    dp = datapath or Datapath(max_batch=max_batch)
    dp.install(compiled, recheck=recheck)
    lim = dp.limits()   # the oracle holds to the datapath's limits
    oracle = OraclePipeline(compiled.cluster, connections_limit=lim["connections"],
                            per_port_limit=lim["per_port"]) if check else None

    def attributed():
        for i, p in enumerate(packets, start=1):
            if p.linktype != LINKTYPE_ETHERNET:
                raise ReplayError(f"packet {i}: link type {p.linktype} is not Ethernet")
            yield Packet(p.frame, arrival_port(compiled, p.interface), p.timestamp_ns, ref=p)

    for index, (pk, r, now) in enumerate(dp.run(attributed(), window_ns=window_ns), start=1):
        o = oracle.process(pk.frame, pk.in_port, now) if oracle is not None else None
        yield Replayed(index, pk.ref, pk.in_port, now, r, o)
