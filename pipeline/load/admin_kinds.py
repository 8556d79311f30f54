"""Parsing cluster-wide policy and Nodes, as their CRDs' schemas and CEL rules
validate them (kubernetes-sigs/network-policy-api: v1alpha1 at v0.1.8 for
AdminNetworkPolicy and BaselineAdminNetworkPolicy, v1alpha2 on main for
ClusterNetworkPolicy; the standard channel, plus `nodes` and named ports from the
experimental one). Every problem is reported as file:document:field.path: message."""

from __future__ import annotations

from typing import Optional

from ..model.admin import ADMIN, ALLOW, ANP, BANP, BASELINE, CNP, DENY, PASS, AdminPeer, AdminPolicy, AdminPort, \
    AdminRule, PodSet
from ..model.objects import Node
from .selectors import parse_selector
from .validation import check_dns_subdomain, check_port_number, check_protocol, parse_cidr, parse_ip, read_list, \
    read_metadata

V1ALPHA1, V1ALPHA2 = "policy.networking.k8s.io/v1alpha1", "policy.networking.k8s.io/v1alpha2"
LIMITS = {ANP: 100, BANP: 100, CNP: 25}          # rules per direction, and peers / ports per rule
MAX_NETWORKS = 25
ACTIONS = {ANP: (ALLOW, DENY, PASS), BANP: (ALLOW, DENY), CNP: ("Accept", DENY, PASS)}


def _one_of(obj, errors, path: str, allowed: tuple) -> Optional[str]:
    """The one field set in obj (the CRDs' MinProperties = MaxProperties = 1)."""
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return None
    present = [k for k in obj if obj[k] is not None]
    for k in present:
        if k not in allowed:
            errors.add(f"{path}.{k}", "unknown field" if k != "domainNames" else
                       "Unsupported value: domainNames peers are not modelled (they need DNS answers)")
            return None
    if len(present) != 1:
        errors.add(path, "Invalid value: exactly one of " + ", ".join(f'"{a}"' for a in allowed) + " must be set")
        return None
    return present[0]


def _pod_set(kind: str, field: str, obj, errors, path: str) -> Optional[PodSet]:
    if field == "namespaces":
        return PodSet(parse_selector(obj, errors, path))
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return None
    for k in sorted(set(obj) - {"namespaceSelector", "podSelector"}):
        errors.add(f"{path}.{k}", "unknown field")
    required = ("podSelector",) if kind == CNP else ("namespaceSelector", "podSelector")
    for k in required:
        if k not in obj:
            errors.add(f"{path}.{k}", "Required value")
    return PodSet(parse_selector(obj.get("namespaceSelector"), errors, f"{path}.namespaceSelector"),
                  parse_selector(obj.get("podSelector"), errors, f"{path}.podSelector"))


def _items(obj, errors, path: str, lo: int, hi: int) -> list:
    items = read_list(obj, errors, path)
    if obj is not None and not lo <= len(items) <= hi:
        errors.add(path, f"Invalid value: {len(items)} items: must have between {lo} and {hi}")
    return items


def _peer(kind: str, obj, errors, path: str, egress: bool) -> Optional[AdminPeer]:
    field = _one_of(obj, errors, path, ("namespaces", "pods", "nodes", "networks") if egress
                    else ("namespaces", "pods"))
    if field is None:
        return None
    value, fpath = obj[field], f"{path}.{field}"
    if field in ("namespaces", "pods"):
        ps = _pod_set(kind, field, value, errors, fpath)
        return AdminPeer(pods=ps) if ps is not None else None
    if field == "nodes":
        return AdminPeer(nodes=parse_selector(value, errors, fpath))
    nets = []
    for i, c in enumerate(_items(value, errors, fpath, 1, MAX_NETWORKS)):
        n = parse_cidr(c, errors, f"{fpath}[{i}]")
        if n is not None:
            nets.append(n)
    if len(set(nets)) != len(nets):
        errors.add(fpath, "Duplicate value: networks is a set")
    return AdminPeer(networks=tuple(nets))


def _range(obj, errors, path: str, strict: bool) -> Optional[tuple]:
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return None
    ok = all(check_port_number(obj.get(k), errors, f"{path}.{k}") for k in ("start", "end"))
    if ok and (obj["start"] >= obj["end"] if strict else obj["start"] > obj["end"]):
        errors.add(path, f"Invalid value: Start port must be less than End port ({obj['start']}, {obj['end']})")
        return None
    return (obj["start"], obj["end"]) if ok else None


def _ports_v1alpha1(obj, errors, path: str, limit: int) -> list:
    out = []
    for i, p in enumerate(_items(obj, errors, path, 1, limit)):
        ppath = f"{path}[{i}]"
        field = _one_of(p, errors, ppath, ("portNumber", "namedPort", "portRange"))
        if field == "namedPort":
            if not isinstance(p[field], str) or not p[field]:
                errors.add(f"{ppath}.namedPort", "Invalid value: must be a non-empty string")
            else:
                out.append(AdminPort(None, name=p[field]))
        elif field == "portNumber":
            v = p[field] if isinstance(p[field], dict) else {}
            proto = check_protocol(v.get("protocol"), errors, f"{ppath}.portNumber.protocol")
            if check_port_number(v.get("port"), errors, f"{ppath}.portNumber.port"):
                out.append(AdminPort(proto, v["port"]))
        elif field == "portRange":
            v = p[field] if isinstance(p[field], dict) else {}
            proto = check_protocol(v.get("protocol"), errors, f"{ppath}.portRange.protocol")
            r = _range(v, errors, f"{ppath}.portRange", strict=False)
            if r is not None:
                out.append(AdminPort(proto, r[0], r[1]))
    return out


def _protocols_v1alpha2(obj, errors, path: str) -> list:
    out = []
    for i, p in enumerate(_items(obj, errors, path, 1, LIMITS[CNP])):
        ppath = f"{path}[{i}]"
        field = _one_of(p, errors, ppath, ("tcp", "udp", "sctp", "destinationNamedPort"))
        if field == "destinationNamedPort":
            if not isinstance(p[field], str) or not p[field]:
                errors.add(f"{ppath}.{field}", "Invalid value: must be a non-empty string")
            else:
                out.append(AdminPort(None, name=p[field]))
        elif field is not None:
            body = p[field]
            dport = body.get("destinationPort") if isinstance(body, dict) else None
            dpath = f"{ppath}.{field}.destinationPort"
            if dport is None:
                errors.add(dpath, "Required value")            # the CRD's minProperties: 1
                continue
            which = _one_of(dport, errors, dpath, ("number", "range"))
            if which == "number" and check_port_number(dport["number"], errors, f"{dpath}.number"):
                out.append(AdminPort(field.upper(), dport["number"]))
            elif which == "range":
                r = _range(dport["range"], errors, f"{dpath}.range", strict=True)
                if r is not None:
                    out.append(AdminPort(field.upper(), r[0], r[1]))
    return out


def _rules(kind: str, obj, errors, path: str, egress: bool) -> tuple:
    out = []
    peers_key = "to" if egress else "from"
    ports_key = "protocols" if kind == CNP else "ports"
    for i, r in enumerate(_items(obj, errors, path, 0, LIMITS[kind])):
        rpath = f"{path}[{i}]"
        if not isinstance(r, dict):
            errors.add(rpath, "must be an object")
            continue
        for k in sorted(set(r) - {"name", "action", peers_key, ports_key}):
            errors.add(f"{rpath}.{k}", "unknown field")
        name = r.get("name", "")
        if not isinstance(name, str) or len(name) > 100:
            errors.add(f"{rpath}.name", "Invalid value: must be a string of at most 100 characters")
            name = ""
        action = r.get("action")
        if action not in ACTIONS[kind]:
            errors.add(f"{rpath}.action", "Required value" if action is None else
                       f"Unsupported value: {action!r}: supported values: " + ", ".join(f'"{a}"' for a in ACTIONS[kind]))
            continue
        if peers_key not in r:
            errors.add(f"{rpath}.{peers_key}", "Required value")
        peers = [_peer(kind, p, errors, f"{rpath}.{peers_key}[{j}]", egress)
                 for j, p in enumerate(_items(r.get(peers_key), errors, f"{rpath}.{peers_key}", 1, LIMITS[kind]))]
        ports = None
        if r.get(ports_key) is not None:
            ports = tuple(_protocols_v1alpha2(r[ports_key], errors, f"{rpath}.{ports_key}") if kind == CNP else
                          _ports_v1alpha1(r[ports_key], errors, f"{rpath}.{ports_key}", LIMITS[kind]))
            if any(p.name for p in ports) and any(p is not None and p.pods is None for p in peers):
                errors.add(rpath, "Invalid value: networks/nodes peer cannot be set with namedPorts since there "
                                  "are no namedPorts for networks/nodes")
        out.append(AdminRule(name, ALLOW if action == "Accept" else action,
                             tuple(p for p in peers if p is not None), ports))
    return tuple(out)


def _admin(kind: str, doc, errors) -> Optional[AdminPolicy]:
    name, _, _ = read_metadata(doc, errors, namespaced=False)
    check_dns_subdomain(name, errors, "metadata.name")
    if kind == BANP and name != "default":
        errors.add("metadata.name", 'Invalid value: Only one baseline admin network policy with '
                                    'metadata.name="default" can be created in the cluster')
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        errors.add("spec", "Required value")
        return None
    known = {"subject", "ingress", "egress"} | ({"priority"} if kind != BANP else set()) | \
        ({"tier"} if kind == CNP else set())
    for k in sorted(set(spec) - known):
        errors.add(f"spec.{k}", "unknown field")
    tier = ADMIN if kind == ANP else BASELINE
    if kind == CNP:
        tier = spec.get("tier")
        if tier not in (ADMIN, BASELINE):
            errors.add("spec.tier", "Required value" if tier is None else
                       f'Unsupported value: {tier!r}: supported values: "Admin", "Baseline"')
    priority = spec.get("priority", 0) if kind != BANP else 0
    if kind != BANP and (isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000
                         or "priority" not in spec):
        errors.add("spec.priority", "Required value" if "priority" not in spec else
                   f"Invalid value: {priority!r}: must be between 0 and 1000, inclusive")
    subject = None
    if "subject" not in spec:
        errors.add("spec.subject", "Required value")
    else:
        field = _one_of(spec["subject"], errors, "spec.subject", ("namespaces", "pods"))
        if field is not None:
            subject = _pod_set(kind, field, spec["subject"][field], errors, f"spec.subject.{field}")
    ingress = _rules(kind, spec.get("ingress"), errors, "spec.ingress", egress=False)
    egress = _rules(kind, spec.get("egress"), errors, "spec.egress", egress=True)
    if subject is None or tier not in (ADMIN, BASELINE):
        return None
    return AdminPolicy(kind, name, tier, priority if isinstance(priority, int) else 0, subject, ingress, egress)


def parse_cnp(doc, errors) -> Optional[AdminPolicy]:
    return _admin(CNP, doc, errors)


def parse_anp(doc, errors) -> Optional[AdminPolicy]:
    return _admin(ANP, doc, errors)


def parse_banp(doc, errors) -> Optional[AdminPolicy]:
    return _admin(BANP, doc, errors)


def parse_node(doc, errors) -> Optional[Node]:
    """A Node's labels and InternalIP addresses (status.addresses); the others (host
    names, external addresses) are not where pods reach it."""
    name, _, labels = read_metadata(doc, errors, namespaced=False)
    check_dns_subdomain(name, errors, "metadata.name")
    status = doc.get("status") or {}
    ips = []
    for i, a in enumerate(read_list(status.get("addresses") if isinstance(status, dict) else None, errors,
                                    "status.addresses")):
        if isinstance(a, dict) and a.get("type") == "InternalIP":
            ip = parse_ip(a.get("address"), errors, f"status.addresses[{i}].address")
            if ip is not None and ip not in ips:
                ips.append(ip)
    return Node(name, labels, tuple(ips))
