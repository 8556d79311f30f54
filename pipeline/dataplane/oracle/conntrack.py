"""The connection tracker (native/conntrack.c), written plainly: a dict from both
directions' keys to one Connection, the state table of docs/pipeline.md, and
timeouts that saturate at the end of the clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..constants import CT_STATE, ICMP, ICMPV6, SCTP, TCP, UDP
from .service import flow_hash

SECOND = 1_000_000_000
CLOCK_END = (1 << 64) - 1
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SCTP_INIT, SCTP_INIT_ACK, SCTP_ABORT, SCTP_SHUTDOWN, SCTP_SHUTDOWN_ACK, SCTP_SHUTDOWN_COMPLETE = 1, 2, 6, 7, 8, 14

S = CT_STATE          # state numbers by name, as C numbers them
# The timeouts of docs/pipeline.md, written down again here (not read from C) so the
# differential tests check C's.
TIMEOUTS = {"SYN_SENT": 30, "SYN_RECV": 30, "ESTABLISHED": 86400, "FIN_WAIT": 120, "LAST_ACK": 30,
            "TIME_WAIT": 30, "CLOSED": 10, "UDP_FIRST": 30, "UDP_REPLIED": 180, "SCTP_INIT": 30,
            "SCTP_ESTABLISHED": 86400, "SCTP_CLOSED": 10, "ICMP": 30}
TIMEOUT = {S[name]: t * SECOND for name, t in TIMEOUTS.items()}
CLOSED_TCP = {S["TIME_WAIT"], S["CLOSED"]}
REOPENABLE = CLOSED_TCP | {S["SCTP_CLOSED"]}
OPEN_STATE = {TCP: S["SYN_SENT"], UDP: S["UDP_FIRST"], SCTP: S["SCTP_INIT"]}
# Source NAT ports, written down again (native/conntrack.h): Linux's ephemeral range,
# clear of the NodePort range.
SNAT_PORT_LO, SNAT_PORT_N, SNAT_TRIES = 32768, 28232, 64


def expiry(now: int, state: int) -> int:
    return min(now + TIMEOUT[state], CLOCK_END)


@dataclass
class Connection:
    key: tuple                    # (zone, src, dst, sport, dport, proto, echo), as opened
    state: int
    expiry: int
    fin_from: Optional[str] = None  # which direction sent the first FIN
    xlate: Optional[tuple] = None   # (translated destination, port): the service mapper's
    snat: Optional[tuple] = None    # (translated source, port): masquerade, hairpin
    port: int = 0                   # the arrival port of the opening packet

    def reply_key(self) -> tuple:
        zone, src, dst, sport, dport, proto, echo = self.key
        xdst, xport = self.xlate or (dst, dport)
        xsrc, xsport = self.snat or (src, sport)
        return (zone, xdst, xsrc, xport, xsport, proto, echo ^ 1 if proto in (ICMP, ICMPV6) else 0)


class ConnTable:
    def __init__(self, limit: int, per_port: int = 0):
        self.limit = limit
        self.per_port = per_port        # live connections one arrival port may hold (0: any)
        self.by_key: dict = {}          # either direction's key -> Connection
        self.live: set = set()          # id() of every Connection in by_key

    def find(self, key: tuple, now: int):
        """(connection, "orig" | "reply") for a live entry, else (None, None)."""
        conn = self.by_key.get(key)
        if conn is None or conn.expiry <= now:
            return None, None
        return conn, ("orig" if conn.key == key else "reply")

    def delete(self, conn: Connection) -> None:
        self.by_key.pop(conn.key, None)
        self.by_key.pop(conn.reply_key(), None)
        self.live.discard(id(conn))

    def connections(self, now: int) -> list:
        seen, out = set(), []
        for c in self.by_key.values():
            if id(c) not in seen and c.expiry > now:
                seen.add(id(c))
                out.append(c)
        return out

    def clashes(self, key: tuple, now: int, xlate=None, snat=None) -> bool:
        """A live connection already answers to the key, or to the reply key the new
        connection would have (possible only where translations are)."""
        conn = Connection(key, 0, 0, xlate=xlate, snat=snat)
        return any(self.find(k, now)[0] is not None for k in (conn.key, conn.reply_key()))

    def choose_source_port(self, key: tuple, now: int, xlate, xsrc) -> Optional[tuple]:
        """Source NAT to xsrc (docs/pipeline.md, "Source NAT"): (xsrc, port) whose reply
        key no live connection answers to: the opening port if in 32768-60999 and free,
        else the range's ports from the flow hash on; ICMP keeps its identifier. None
        when all SNAT_TRIES are taken."""
        zone, src, dst, sport, dport, proto, _ = key
        ports = proto in (TCP, UDP, SCTP)
        h = flow_hash(src, dst, sport, dport, proto)
        keep = not ports or SNAT_PORT_LO <= sport < SNAT_PORT_LO + SNAT_PORT_N
        for i in range(SNAT_TRIES if ports else 1):
            port = sport if i == 0 and keep else SNAT_PORT_LO + (h + i) % SNAT_PORT_N
            if self.find(Connection(key, 0, 0, xlate=xlate, snat=(xsrc, port)).reply_key(), now)[0] is None:
                return xsrc, port
        return None

    def port_full(self, port: int, now: int) -> bool:
        """The port already holds per_port live connections (--max-connections-per-pod)."""
        return bool(self.per_port) and sum(c.port == port for c in self.connections(now)) >= self.per_port

    def insert(self, key: tuple, state: int, now: int, xlate=None, snat=None,
               port: int = 0) -> Optional[Connection]:
        """None when every entry is live and the table is at its limit."""
        if len(self.live) >= self.limit:
            for c in list({id(c): c for c in self.by_key.values()}.values()):
                if c.expiry <= now:
                    self.delete(c)
            if len(self.live) >= self.limit:
                return None
        conn = Connection(key, state, expiry(now, state), xlate=xlate, snat=snat, port=port)
        for k in (conn.key, conn.reply_key()):
            old = self.by_key.get(k)
            if old is not None:          # an expired entry with the same key
                self.delete(old)
        self.by_key[conn.key] = conn
        self.by_key[conn.reply_key()] = conn
        self.live.add(id(conn))
        return conn


def can_open(proto: int, tcp_flags: int, sctp_chunk: int, icmp_kind: str) -> bool:
    if proto == TCP:
        return bool(tcp_flags & SYN) and not tcp_flags & (ACK | RST)
    if proto == UDP:
        return True
    if proto == SCTP:
        return sctp_chunk == SCTP_INIT
    return icmp_kind == "request"


def update(conn: Connection, direction: str, proto: int, tcp_flags: int, sctp_chunk: int, now: int) -> None:
    """The state table of docs/pipeline.md; every packet refreshes."""
    s = conn.state
    if proto == TCP:
        f = tcp_flags
        if f & RST:
            s = S["CLOSED"]
        elif s == S["SYN_SENT"] and direction == "reply" and f & SYN and f & ACK:
            s = S["SYN_RECV"]
        elif s == S["SYN_RECV"] and direction == "orig" and f & ACK and not f & SYN:
            s = S["ESTABLISHED"]
        elif s == S["ESTABLISHED"] and f & FIN:
            s, conn.fin_from = S["FIN_WAIT"], direction
        elif s == S["FIN_WAIT"] and f & FIN and direction != conn.fin_from:
            s = S["LAST_ACK"]
        elif s == S["LAST_ACK"] and direction == conn.fin_from and f & ACK and not f & (FIN | SYN):
            s = S["TIME_WAIT"]
    elif proto == UDP:
        if direction == "reply":
            s = S["UDP_REPLIED"]
    elif proto == SCTP:
        if sctp_chunk in (SCTP_ABORT, SCTP_SHUTDOWN, SCTP_SHUTDOWN_ACK, SCTP_SHUTDOWN_COMPLETE):
            s = S["SCTP_CLOSED"]
        elif s == S["SCTP_INIT"] and direction == "reply" and sctp_chunk == SCTP_INIT_ACK:
            s = S["SCTP_ESTABLISHED"]
    conn.state = s
    conn.expiry = expiry(now, s)
