"""Parsing and validating one Kubernetes document per kind, as the API server would
refuse it. Every problem is reported as file:document:field.path: message."""

from __future__ import annotations

from typing import Optional

from ..model.objects import (ContainerPort, IPBlock, MultiNetworkPolicy, Namespace, NetworkPolicy, Peer, Pod,
                             PolicyPort, Rule)
from .admin_kinds import V1ALPHA1, V1ALPHA2, parse_anp, parse_banp, parse_cnp, parse_node
from .selectors import parse_selector
from .network_kinds import parse_nad, pod_networks, policy_for
from .service_kinds import parse_endpointslice, parse_service
from .validation import (check_dns_label, check_dns_subdomain, check_port_name,
                         check_port_number, check_protocol, parse_cidr, parse_ip, read_list, read_metadata,
                         read_objects, read_spec)

SUPPORTED = {
    ("v1", "Namespace"), ("v1", "Pod"), ("v1", "Service"), ("v1", "Node"),
    (V1ALPHA2, "ClusterNetworkPolicy"), (V1ALPHA1, "AdminNetworkPolicy"), (V1ALPHA1, "BaselineAdminNetworkPolicy"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"),
    ("k8s.cni.cncf.io/v1beta1", "MultiNetworkPolicy"), ("k8s.cni.cncf.io/v1beta2", "MultiNetworkPolicy"),
}
POLICY_TYPES = ("Ingress", "Egress")
POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def parse_namespace(doc, errors) -> Optional[Namespace]:
    name, _, labels = read_metadata(doc, errors, namespaced=False)
    check_dns_label(name, errors, "metadata.name")
    return Namespace(name, labels)


def parse_pod(doc, errors) -> Optional[Pod]:
    name, namespace, labels = read_metadata(doc, errors, namespaced=True)
    check_dns_subdomain(name, errors, "metadata.name")
    spec = read_spec(doc, errors)
    ports: list[ContainerPort] = []
    names: dict[str, str] = {}
    for _, cpath, c in read_objects(spec.get("containers"), errors, "spec.containers"):
        for _, path, p in read_objects(c.get("ports"), errors, f"{cpath}.ports"):
            ok = check_port_number(p.get("containerPort"), errors, f"{path}.containerPort")
            proto = check_protocol(p.get("protocol"), errors, f"{path}.protocol")
            pname = p.get("name")
            if pname is not None:
                if not check_port_name(pname, errors, f"{path}.name"):
                    ok = False
                elif pname in names:
                    errors.add(f"{path}.name", f"Duplicate value: {pname!r}")
                    ok = False
                else:
                    names[pname] = path
            if ok:
                ports.append(ContainerPort(p["containerPort"], proto, pname))
    host_network = bool(spec.get("hostNetwork", False))
    node_name = spec.get("nodeName")
    if node_name is not None:
        check_dns_subdomain(node_name, errors, "spec.nodeName")
    status = doc.get("status") or {}
    ips = []
    phase = "Running"
    if isinstance(status, dict):
        phase = status.get("phase") or "Running"
        if phase not in POD_PHASES:
            errors.add("status.phase", f"Unsupported value: {phase!r}: supported values: "
                       + ", ".join(f'"{p}"' for p in POD_PHASES))
        raw = [x.get("ip") if isinstance(x, dict) else x
               for x in read_list(status.get("podIPs"), errors, "status.podIPs")]
        if not raw and status.get("podIP"):
            raw = [status["podIP"]]
        for i, r in enumerate(raw):
            ip = parse_ip(r, errors, f"status.podIPs[{i}].ip")
            if ip is not None:
                if any(x.version == ip.version for x in ips):
                    errors.add(f"status.podIPs[{i}].ip", "Invalid value: at most one IP of each family")
                else:
                    ips.append(ip)
        primary = status.get("podIP")
        if primary and ips and str(ips[0]) != str(primary):
            p = parse_ip(primary, errors, "status.podIP")
            if p is not None and p != ips[0]:
                errors.add("status.podIP", f"Invalid value: {primary!r}: must be the same as podIPs[0] ({ips[0]})")
    networks, network_status = pod_networks(doc, namespace, errors)
    return Pod(namespace, name, labels, tuple(ports), host_network, tuple(ips), phase,
               node_name if isinstance(node_name, str) else None, _ready(status, errors),
               networks, network_status)


def _ready(status, errors) -> bool:
    """status.conditions[type=Ready]: "True" is ready; "False" and "Unknown" are not.
    A pod without that condition (a manifest as written, not as the API returns it) is
    taken as ready, as a pod without a phase is taken as running."""
    if not isinstance(status, dict):
        return True
    for i, c in enumerate(read_list(status.get("conditions"), errors, "status.conditions")):
        if isinstance(c, dict) and c.get("type") == "Ready":
            if c.get("status") not in ("True", "False", "Unknown"):
                errors.add(f"status.conditions[{i}].status", f"Unsupported value: {c.get('status')!r}: "
                           'supported values: "False", "True", "Unknown"')
            return c.get("status") == "True"
    return True


def _parse_peer(obj, errors, path: str) -> Optional[Peer]:
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return None
    unknown = set(obj) - {"podSelector", "namespaceSelector", "ipBlock"}
    for k in sorted(unknown):
        errors.add(f"{path}.{k}", "unknown field")
    # A field given as null is absent (the API server decodes it so): {podSelector: null}
    # names no peer at all.
    obj = {k: v for k, v in obj.items() if v is not None}
    has_sel = "podSelector" in obj or "namespaceSelector" in obj
    if "ipBlock" in obj:
        if has_sel:
            errors.add(path, "may not specify more than 1 peer type when ipBlock is set")
            return None
        return _parse_ipblock(obj["ipBlock"], errors, f"{path}.ipBlock")
    if not has_sel:
        errors.add(path, "Required value: must specify a peer")
        return None
    pod = parse_selector(obj["podSelector"], errors, f"{path}.podSelector") if "podSelector" in obj else None
    ns = (parse_selector(obj["namespaceSelector"], errors, f"{path}.namespaceSelector")
          if "namespaceSelector" in obj else None)
    return Peer(pod_selector=pod, namespace_selector=ns)


def _parse_ipblock(obj, errors, path: str) -> Optional[Peer]:
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return None
    cidr = parse_cidr(obj.get("cidr"), errors, f"{path}.cidr") if obj.get("cidr") is not None else None
    if obj.get("cidr") is None:
        errors.add(f"{path}.cidr", "Required value")
    excepts = []
    for i, e in enumerate(read_list(obj.get("except"), errors, f"{path}.except")):
        net = parse_cidr(e, errors, f"{path}.except[{i}]")
        if net is None or cidr is None:
            continue
        if net.version != cidr.version or not net.subnet_of(cidr) or net.prefixlen <= cidr.prefixlen:
            errors.add(f"{path}.except[{i}]", f"Invalid value: {e!r}: must be a strict subset of `cidr`")
            continue
        excepts.append(net)
    if cidr is None:
        return None
    return Peer(ip_block=IPBlock(cidr, tuple(excepts)))


def _parse_policy_port(obj, errors, path: str) -> Optional[PolicyPort]:
    if not isinstance(obj, dict):
        errors.add(path, "must be an object")
        return None
    proto = check_protocol(obj.get("protocol"), errors, f"{path}.protocol")
    port = obj.get("port")
    end = obj.get("endPort")
    ok = True
    if isinstance(port, str):            # IntOrString: a string is a port name, never digits
        ok = check_port_name(port, errors, f"{path}.port")
        if end is not None:
            errors.add(f"{path}.endPort", "may not be specified when `port` is non-numeric")
            ok = False
    elif port is not None:
        ok = check_port_number(port, errors, f"{path}.port")
    if end is not None and port is None:
        errors.add(f"{path}.endPort", "may not be specified when `port` is not specified")
        ok = False
    if end is not None and isinstance(port, int) and ok:
        if check_port_number(end, errors, f"{path}.endPort"):
            if end < port:
                errors.add(f"{path}.endPort", f"Invalid value: {end}: must be greater than or equal to `port`")
                ok = False
        else:
            ok = False
    return PolicyPort(proto, port, end) if ok else None


def _parse_rules(rules, errors, path: str, peer_key: str) -> tuple[Rule, ...]:
    out = []
    for i, r in enumerate(read_list(rules, errors, path)):
        rp = f"{path}[{i}]"
        if r is None:
            r = {}
        if not isinstance(r, dict):
            errors.add(rp, "must be an object")
            continue
        for k in sorted(set(r) - {peer_key, "ports"}):
            errors.add(f"{rp}.{k}", "unknown field")
        raw_peers = read_list(r.get(peer_key), errors, f"{rp}.{peer_key}")
        peers = [_parse_peer(p, errors, f"{rp}.{peer_key}[{j}]") for j, p in enumerate(raw_peers)]
        raw_ports = read_list(r.get("ports"), errors, f"{rp}.ports")
        ports = [_parse_policy_port(p, errors, f"{rp}.ports[{j}]") for j, p in enumerate(raw_ports)]
        out.append(Rule(tuple(p for p in peers if p) if raw_peers else None,
                        tuple(p for p in ports if p) if raw_ports else None))
    return tuple(out)


def parse_networkpolicy(doc, errors, multi: bool = False) -> Optional[NetworkPolicy]:
    name, namespace, _ = read_metadata(doc, errors, namespaced=True)
    check_dns_subdomain(name, errors, "metadata.name")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        errors.add("spec", "Required value")
        return None
    for k in sorted(set(spec) - {"podSelector", "policyTypes", "ingress", "egress"}):
        errors.add(f"spec.{k}", "unknown field")
    if "podSelector" not in spec:
        errors.add("spec.podSelector", "Required value")
    selector = parse_selector(spec.get("podSelector"), errors, "spec.podSelector")
    ingress = _parse_rules(spec.get("ingress"), errors, "spec.ingress", "from")
    egress = _parse_rules(spec.get("egress"), errors, "spec.egress", "to")
    types = spec.get("policyTypes")
    if multi and not types and (types is None or isinstance(types, list)):
        # No API server defaults a MultiNetworkPolicy: as multi-networkpolicy-iptables
        # (server.go getEnabledPolicyTypes: len(spec.Ingress) > 0), the types are those
        # whose rule lists are present and not empty; `ingress: []` isolates nothing.
        types = [t for t, rules in (("Ingress", ingress), ("Egress", egress)) if rules]
    elif not types and (types is None or isinstance(types, list)):
        # Defaulting as the API server does, for an absent or empty list: Ingress always,
        # Egress when egress rules exist.
        types = ["Ingress"] + (["Egress"] if egress else [])
    elif not isinstance(types, list):
        errors.add("spec.policyTypes", "must be a list")
        types = []
    else:
        for i, t in enumerate(types):
            if t not in POLICY_TYPES:
                errors.add(f"spec.policyTypes[{i}]", f"Unsupported value: {t!r}: supported values: \"Egress\", \"Ingress\"")
        if len(types) > 2:
            errors.add("spec.policyTypes", "may not have more than 2 entries")
    types = tuple(t for t in POLICY_TYPES if t in types)
    if multi:
        return MultiNetworkPolicy(namespace, name, selector, types, ingress, egress,
                                  policy_for(doc, namespace, errors))
    return NetworkPolicy(namespace, name, selector, types, ingress, egress)


def parse_multinetworkpolicy(doc, errors) -> Optional[NetworkPolicy]:
    return parse_networkpolicy(doc, errors, multi=True)


PARSERS = {
    "Namespace": parse_namespace, "Pod": parse_pod, "Service": parse_service,
    "EndpointSlice": parse_endpointslice, "NetworkPolicy": parse_networkpolicy,
    "NetworkAttachmentDefinition": parse_nad, "MultiNetworkPolicy": parse_multinetworkpolicy,
    "Node": parse_node, "ClusterNetworkPolicy": parse_cnp, "AdminNetworkPolicy": parse_anp,
    "BaselineAdminNetworkPolicy": parse_banp,
}
