"""Rendering matrices for people (a grid) and programs (streamed JSON)."""

from __future__ import annotations

import json
from collections import Counter
from typing import IO, Iterable, Optional

from ..model.reach import Matrix


def print_matrix_table(m: Matrix, out: IO[str]) -> None:
    """Rows are numbered sources; columns carry the same numbers, so the grid stays
    narrow however long the pod names are."""
    names = [p.key for p in m.pods]
    print(f"{m.protocol}/{m.port}  (row: from, column: to; . allowed, X denied)", file=out)
    if not names:
        print("  (no pods)", file=out)
        return
    num = len(str(len(names)))
    width = max(len(n) for n in names)
    header = " ".join(f"{j + 1:>{num}}" for j in range(len(names)))
    print(f"{'':>{num}}  {'':<{width}}  {header}", file=out)
    for i, name in enumerate(names):
        cells = " ".join(f"{'.' if a else 'X':>{num}}" for a in m.allowed[i])
        print(f"{i + 1:>{num}}  {name:<{width}}  {cells}", file=out)


def service_cell_dict(c) -> dict:
    return {"from": c.source, "to": c.service, "service": c.service, "protocol": c.protocol, "port": c.port,
            "allowed": c.allowed,
            "backends": [{"backend": b.pod or str(b.address), "address": str(b.address), "port": b.port,
                          "allowed": ok} for b, ok in c.backends]}


def print_service_table(cells: list, out: IO[str]) -> None:
    """Rows are source pods; columns are numbered Service ports, listed underneath."""
    cols = sorted({(c.service, c.protocol, c.port) for c in cells})
    rows = sorted({c.source for c in cells})
    print("Services  (row: from, column: service port; . allowed through every ready backend, "
          "~ through some, X through none, - no ready backend: rejected)", file=out)
    if not cols or not rows:
        print("  (no services with a virtual IP)", file=out)
        return
    by = {(c.source, c.service, c.protocol, c.port): c.mark for c in cells}
    num, width = len(str(len(cols))), max(len(r) for r in rows)
    print(f"{'':<{width}}  " + " ".join(f"{j + 1:>{num}}" for j in range(len(cols))), file=out)
    for r in rows:
        print(f"{r:<{width}}  " + " ".join(f"{by.get((r,) + col, ' '):>{num}}" for col in cols), file=out)
    for j, (svc, proto, port) in enumerate(cols):
        print(f"  {j + 1:>{num}}: {svc} {proto}/{port}", file=out)


def stream_matrix_json(matrices: Iterable[Matrix], out: IO[str], extra: Iterable[dict] = ()) -> None:
    """A JSON list of {from, to, protocol, port, allowed}, written cell by cell so a
    million-cell matrix never becomes one string; then the `extra` cells (Services)."""
    out.write("[")
    first = True
    for m in matrices:
        names = [json.dumps(p.key) for p in m.pods]
        proto = json.dumps(m.protocol)
        for i, src in enumerate(names):
            row = m.allowed[i]
            chunk = []
            for j, dst in enumerate(names):
                chunk.append(f'{{"from": {src}, "to": {dst}, "protocol": {proto}, '
                             f'"port": {m.port}, "allowed": {"true" if row[j] else "false"}}}')
            if chunk:
                out.write(("\n" if first else ",\n") + ",\n".join(chunk))
                first = False
    for cell in extra:
        out.write(("\n" if first else ",\n") + json.dumps(cell))
        first = False
    out.write("\n]\n")


# -- netsem probe --------------------------------------------------------------------

def _cell(obs: Optional[bool], exp: bool) -> str:
    if obs is None:
        return "?"
    c = "." if obs else "X"
    return c if obs == exp else c + "!"


def render_probe_table(pods: list, combos: list, results: dict, out) -> None:
    names = [p.key for p in pods]
    num = max(2, len(str(len(names))))
    width = max((len(n) for n in names), default=0)
    for k, (proto, port) in enumerate(combos):
        if k:
            print(file=out)
        print(f"{proto}/{port}  observed (row: from, column: to; . allowed, X denied, "
              f"! differs from the model)", file=out)
        print(f"{'':>{len(str(len(names)))}}  {'':<{width}}  " +
              " ".join(f"{j + 1:>{num}}" for j in range(len(names))), file=out)
        for i, name in enumerate(names):
            cells = []
            for j in range(len(names)):
                p = results.get((proto, port, i, j))
                cells.append(f"{_cell(p.allowed if p else None, p.expected if p else True):>{num}}")
            print(f"{i + 1:>{len(str(len(names)))}}  {name:<{width}}  " + " ".join(cells), file=out)



def render_probe(report, output: str, out) -> None:
    """The observed matrix with every cell that differs from the model marked (table),
    or the objects of `reach` with what the packets showed (json)."""
    index = {p.key: i for i, p in enumerate(report.pods)}
    results = {(p.protocol, p.port, index[p.src.key], index[p.dst.key]): p for p in report.probes}
    if output == "json":
        json.dump([{"from": p.src.key, "to": p.dst.key, "protocol": p.protocol, "port": p.port,
                    "allowed": p.allowed, "expected": p.expected, "detail": p.detail}
                   for p in report.probes] +
                  [{"from": s.source, "to": s.service, "service": s.service, "protocol": s.protocol,
                    "port": s.port, "allowed": s.observed == ".", "expected": s.expected == ".",
                    "observed": s.observed, "expectedMark": s.expected, "differs": s.differs,
                    "backends": dict(sorted(s.answers.items())), "timeouts": s.timeouts, "refused": s.refused}
                   for s in report.services], out, indent=1)
        print(file=out)
        return
    render_probe_table(report.pods, report.combos, results, out)
    print(file=out)
    differ = report.differ
    if differ:
        print(f"{len(differ)} of {len(report.probes)} probes differ from the model:", file=out)
        for p in differ:
            print(f"  {p.src.key} -> {p.dst.key} {p.protocol}/{p.port}: observed "
                  f"{'allowed' if p.allowed else 'denied'} ({p.detail}), model "
                  f"{'allowed' if p.expected else 'denied'}", file=out)
    else:
        print(f"all {len(report.probes)} probes agree with the model", file=out)
    if report.services:
        print(file=out)
        render_service_probes(report, out)


def render_service_probes(report, out) -> None:
    """Source pods x Service ports, observed marks (! where the model differs), then
    how each Service port's connections spread over its backends."""
    cols = sorted({(s.service, s.protocol, s.port) for s in report.services})
    rows = sorted({s.source for s in report.services})
    by = {(s.source, s.service, s.protocol, s.port): s for s in report.services}
    print("Services  observed (row: from, column: service port; . every connection answered, ~ some, "
          "X none, - refused; ! differs from the model)", file=out)
    if cols:
        num, width = max(2, len(str(len(cols)))), max(len(r) for r in rows)
        print(f"{'':<{width}}  " + " ".join(f"{j + 1:>{num}}" for j in range(len(cols))), file=out)
        for r in rows:
            cells = [by.get((r,) + c) for c in cols]
            print(f"{r:<{width}}  " + " ".join(
                f"{(s.observed + ('!' if s.differs else '')) if s else ' ':>{num}}" for s in cells), file=out)
        for j, (svc, proto, port) in enumerate(cols):
            spread = Counter()
            for s in report.services:
                if (s.service, s.protocol, s.port) == (svc, proto, port):
                    spread.update(s.answers)
            who = ", ".join(f"{k} {v}" for k, v in sorted(spread.items())) or "no answer"
            print(f"  {j + 1:>{num}}: {svc} {proto}/{port}: {who}", file=out)
    differ = report.services_differ
    print(f"{len(differ)} of {len(report.services)} Service cells differ from the model" if differ
          else f"all {len(report.services)} Service cells agree with the model", file=out)
