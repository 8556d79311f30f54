"""Secondary networks as Multus users write them (001, 004 steps 2-3): the
NetworkAttachmentDefinition (k8s.cni.cncf.io/v1), whose `spec.config` is a CNI JSON
string, and a pod's `k8s.v1.cni.cncf.io/networks` (what it asks for: the comma list
`ns/name@ifname` or the JSON list of NetworkSelectionElements) and
`k8s.v1.cni.cncf.io/network-status` (what it got) annotations."""

from __future__ import annotations

import ipaddress
import json
from typing import Optional

from ..model.addresses import DEFAULT_DOMAIN
from ..model.objects import NetworkAttachmentDefinition, NetworkRequest, NetworkStatus
from .validation import check_dns_label, check_dns_subdomain, read_metadata, read_spec

NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
POLICY_FOR = "k8s.v1.cni.cncf.io/policy-for"


def policy_for(doc, namespace: str, errors) -> tuple:
    """A MultiNetworkPolicy's networks as written: ((namespace, definition name), ...)
    from the comma list of `ns/name` or `name` (the policy's namespace). Absent: none,
    so the policy applies nowhere (as multi-networkpolicy-iptables ignores it)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    text = (meta.get("annotations") or {}).get(POLICY_FOR) if isinstance(meta.get("annotations"), dict) else None
    if text is None:
        return ()
    if not isinstance(text, str):
        errors.add(_field(POLICY_FOR), "must be a string")
        return ()
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        ns, _, name = part.rpartition("/")
        ns = ns or namespace
        if check_dns_label(ns, errors, f"{_field(POLICY_FOR)}[{i}].namespace") and \
                check_dns_subdomain(name, errors, f"{_field(POLICY_FOR)}[{i}].name"):
            out.append((ns, name))
    return tuple(out)


def parse_nad(doc, errors) -> Optional[NetworkAttachmentDefinition]:
    name, namespace, _ = read_metadata(doc, errors, namespaced=True)
    check_dns_subdomain(name, errors, "metadata.name")
    raw = read_spec(doc, errors).get("config")
    if not isinstance(raw, str):
        errors.add("spec.config", "Required value: a CNI configuration as a JSON string")
        return None
    try:
        config = json.loads(raw)
    except ValueError as e:
        errors.add("spec.config", f"Invalid value: not JSON: {e}")
        return None
    if not isinstance(config, dict) or not isinstance(config.get("name"), str) or not config["name"]:
        errors.add("spec.config", "Invalid value: the CNI configuration must be an object with a \"name\"")
        return None
    domain = config.get("ipAddressDomain", DEFAULT_DOMAIN)
    if not isinstance(domain, str) or not domain:
        errors.add("spec.config", "Invalid value: \"ipAddressDomain\" must be a non-empty string")
        return None
    routable = config.get("routableNetworks", [])
    if not isinstance(routable, list) or not all(isinstance(n, str) and n for n in routable):
        errors.add("spec.config", "Invalid value: \"routableNetworks\" must be a list of network names")
        return None
    subnets = []
    for s in _ipam_subnets(config.get("ipam")):
        try:
            subnets.append(ipaddress.ip_network(s, strict=False))
        except ValueError:
            errors.add("spec.config", f"Invalid value: ipam subnet {s!r} is not a CIDR")
    return NetworkAttachmentDefinition(namespace, name, config["name"], domain, tuple(subnets),
                                       tuple(routable))


def _ipam_subnets(ipam) -> list:
    """The CIDRs an IPAM config allocates from: host-local's `subnet` or `ranges`,
    whereabouts' `range`, static's `addresses` (their networks)."""
    if not isinstance(ipam, dict):
        return []
    out = [ipam[k] for k in ("subnet", "range") if isinstance(ipam.get(k), str)]
    for rs in ipam.get("ranges") or []:
        for r in rs if isinstance(rs, list) else []:
            if isinstance(r, dict) and isinstance(r.get("subnet"), str):
                out.append(r["subnet"])
    for a in ipam.get("addresses") or []:
        if isinstance(a, dict) and isinstance(a.get("address"), str):
            out.append(a["address"])
    return out


def pod_networks(doc, namespace: str, errors) -> tuple[tuple, tuple]:
    """(NetworkRequest, ...), (NetworkStatus, ...) from a pod's annotations."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    ann = meta.get("annotations") or {}
    if not isinstance(ann, dict):
        return (), ()
    return _requests(ann.get(NETWORKS), namespace, errors), _statuses(ann.get(NETWORK_STATUS), errors)


def _field(key: str) -> str:
    return f"metadata.annotations[{key}]"


def _requests(text, namespace: str, errors) -> tuple:
    if text is None or (isinstance(text, str) and not text.strip()):
        return ()
    if not isinstance(text, str):
        errors.add(_field(NETWORKS), "must be a string")
        return ()
    out = []
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as e:
            errors.add(_field(NETWORKS), f"Invalid value: not JSON: {e}")
            return ()
        for i, it in enumerate(items if isinstance(items, list) else [None]):
            if not isinstance(it, dict) or not isinstance(it.get("name"), str):
                errors.add(f"{_field(NETWORKS)}[{i}]", "Invalid value: an object with a \"name\"")
                continue
            ips = _ips(it.get("ips") or [], errors, f"{_field(NETWORKS)}[{i}].ips")
            out.append(_request(it.get("namespace") or namespace, it["name"], it.get("interface"), ips,
                                errors, f"{_field(NETWORKS)}[{i}]"))
    else:
        for i, part in enumerate(p.strip() for p in text.split(",")):
            ref, _, iface = part.partition("@")
            ns, _, name = ref.rpartition("/")
            out.append(_request(ns or namespace, name, iface or None, (), errors, f"{_field(NETWORKS)}[{i}]"))
    return tuple(r for r in out if r is not None)


def _request(ns, name, iface, ips, errors, path) -> Optional[NetworkRequest]:
    ok = check_dns_label(ns, errors, f"{path}.namespace") and check_dns_subdomain(name, errors, f"{path}.name")
    if iface is not None and (not isinstance(iface, str) or not iface or len(iface) > 15 or "/" in iface):
        errors.add(f"{path}.interface", f"Invalid value: {iface!r}: an interface name (1-15 characters)")
        ok = False
    return NetworkRequest(ns, name, iface, ips) if ok else None


def _ips(values, errors, path) -> tuple:
    out = []
    for i, v in enumerate(values if isinstance(values, list) else [values]):
        try:
            out.append(ipaddress.ip_interface(v).ip if isinstance(v, str) else None)
        except ValueError:
            out.append(None)
        if out[-1] is None:
            errors.add(f"{path}[{i}]", f"Invalid value: {v!r}: an IP address")
            out.pop()
    return tuple(out)


def _statuses(text, errors) -> tuple:
    """The reported attachments but the cluster network's (`default: true`, or eth0)."""
    if not text:
        return ()
    try:
        items = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        items = None
    if not isinstance(items, list):
        errors.add(_field(NETWORK_STATUS), "Invalid value: a JSON list")
        return ()
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not isinstance(it.get("name"), str):
            errors.add(f"{_field(NETWORK_STATUS)}[{i}]", "Invalid value: an object with a \"name\"")
            continue
        if it.get("default") or it.get("interface") in (None, "eth0"):
            continue
        out.append(NetworkStatus(it["name"], it["interface"],
                                 _ips(it.get("ips") or [], errors, f"{_field(NETWORK_STATUS)}[{i}].ips")))
    return tuple(out)
