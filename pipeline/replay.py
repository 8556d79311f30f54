"""Runs a capture through the native pipeline, and optionally through the oracle
alongside it (`--check`): the offline way to verify a trace packet by packet.

Packets are grouped into batches of consecutive packets less than `window_ns` apart
(at most 256); a batch runs with the timestamp of its first packet as `now`, and the
oracle is given the same `now`, so both see the same clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

from .compiler import Compiled
from .pcap import LINKTYPE_ETHERNET, CapturedPacket
from .results import Result

PORT_UNKNOWN = 0xFFFF


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


@dataclass
class ReplaySummary:
    packets: int = 0
    by_reason: dict = field(default_factory=dict)
    port_unknown: int = 0
    disagreement: Optional[Replayed] = None


def arrival_port(compiled: Compiled, iface: Optional[str]) -> int:
    if iface is None:
        return PORT_UNKNOWN
    if iface == "uplink":
        return 0
    if iface in compiled.port_of:
        return compiled.port_of[iface]
    raise ReplayError(f"capture interface {iface!r} is neither 'uplink' nor a pod of the manifests "
                      f"(pods: {', '.join(sorted(compiled.port_of)) or 'none'})")


def replay(compiled: Compiled, packets: Iterator[CapturedPacket], check: bool = False,
           window_ns: int = 1_000_000, max_batch: int = 256, recheck: bool = False) -> Iterator[Replayed]:
    from .fastpath import FastPath
    from .oracle.packets import OraclePipeline

    fast = FastPath(max_batch=max_batch)
    fast.install(compiled, recheck=recheck)
    oracle = OraclePipeline(compiled.cluster) if check else None
    batch: list[tuple[CapturedPacket, int]] = []
    index = 0

    def flush():
        nonlocal index
        now = batch[0][0].timestamp_ns
        results = fast.run_batch([p.frame for p, _ in batch], [port for _, port in batch], now)
        for (p, port), r in zip(batch, results):
            o = oracle.process(p.frame, port, now) if oracle is not None else None
            index += 1
            yield Replayed(index, p, port, now, r, o)
        batch.clear()

    for p in packets:
        if p.linktype != LINKTYPE_ETHERNET:
            raise ReplayError(f"packet {index + len(batch) + 1}: link type {p.linktype} is not Ethernet")
        if batch and (len(batch) == max_batch or p.timestamp_ns - batch[0][0].timestamp_ns >= window_ns
                      or p.timestamp_ns < batch[0][0].timestamp_ns):
            yield from flush()
        batch.append((p, arrival_port(compiled, p.interface)))
    if batch:
        yield from flush()
