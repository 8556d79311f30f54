"""Runs a capture through the datapath, and optionally through the oracle alongside
it (`--check`): the offline way to verify a trace packet by packet.

Packets are batched by the driver's batcher (consecutive packets less than
`window_ns` apart, at most 256 a batch); a batch runs with the timestamp of its first
packet as `now`, and the oracle is given the same `now`, so both see the same clock."""

from __future__ import annotations

import itertools
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
    recorded: Optional[str] = None      # the recording switch's reason (generations replay)
    generation: int = 0                 # the table generation replayed it (generations replay)

    @property
    def agrees(self) -> bool:
        return self.oracle is None or self.oracle.comparable() == self.result.comparable()

    @property
    def switch_agrees(self) -> bool:
        """The replay judged it as the recording switch did (when that was noted)."""
        return self.recorded is None or self.recorded == self.result.reason


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
           datapath: Optional[Datapath] = None,
           generations: Optional[dict[int, Compiled]] = None) -> Iterator[Replayed]:
    """generations: the table generations of a `netsem up --pcap` recording (number ->
    Compiled); each packet is replayed under the one its comment names (a packet with
    none under the one before it), swapped in between batches as the switch did, in
    the datapath and the oracle alike, and its verdict held to the recorded one."""
    from .oracle import OraclePipeline

    dp = datapath or Datapath(max_batch=max_batch)
    dp.install(compiled, recheck=recheck)
    lim = dp.limits()   # the oracle holds to the datapath's limits
    oracle = OraclePipeline(compiled.cluster, connections_limit=lim["connections"],
                            per_port_limit=lim["per_port"]) if check else None
    current = {"gen": None, "compiled": compiled}

    def numbered():
        for i, p in enumerate(packets, start=1):
            if p.linktype != LINKTYPE_ETHERNET:
                raise ReplayError(f"packet {i}: link type {p.linktype} is not Ethernet")
            judged = p.judged() if generations is not None else None
            gen = judged[1] if judged else current["gen"]
            if gen is not None and current["gen"] is None:
                current["gen"] = gen
            yield gen, p, judged

    def segment(items, tables):
        for _, p, judged in items:
            yield Packet(p.whole_frame(), arrival_port(tables, p.interface), p.timestamp_ns, ref=(p, judged),
                         offload=p.offload())

    index = 0
    for gen, items in itertools.groupby(numbered(), key=lambda t: t[0]):
        if generations is not None and gen is not None and gen != current.get("installed"):
            if gen not in generations:
                raise ReplayError(f"the capture names table generation {gen}, which the recording has not "
                                  f"kept (generations.json lists {', '.join(map(str, sorted(generations)))})")
            current["compiled"] = generations[gen]
            if current.get("installed") is not None or current["compiled"] is not compiled:
                dp.install(current["compiled"])
                if oracle is not None:
                    oracle.install(current["compiled"].cluster)
            current["installed"] = gen
        for pk, r, now in dp.run(segment(items, current["compiled"]), window_ns=window_ns):
            index += 1
            o = oracle.process(pk.frame, pk.in_port, now, pk.offload) if oracle is not None else None
            p, judged = pk.ref
            yield Replayed(index, p, pk.in_port, now, r, o, judged[0] if judged else None, gen or 0)

