"""Parsing and validating Services and EndpointSlices, as the API server would refuse
them (file:document:field.path: message)."""

from __future__ import annotations

from typing import Optional

from ..model.objects import (DEFAULT_AFFINITY_TIMEOUT, NODE_PORT_RANGE, SERVICE_TYPES, EndpointSlice, Service,
                             ServicePort, SliceEndpoint, SlicePort)
from .validation import (check_dns_label, check_dns_subdomain, check_labels, check_port_name, check_port_number,
                         check_protocol, parse_ip, read_list, read_metadata, read_objects, read_spec)


def parse_service(doc, errors) -> Optional[Service]:
    name, namespace, _ = read_metadata(doc, errors, namespaced=True)
    check_dns_label(name, errors, "metadata.name")
    spec = read_spec(doc, errors)
    selector = spec.get("selector")
    if selector is not None:
        selector = check_labels(selector, errors, "spec.selector")
    stype = spec.get("type") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        errors.add("spec.type", f"Unsupported value: {stype!r}: supported values: "
                   + ", ".join(f'"{t}"' for t in SERVICE_TYPES))
    ports = []
    seen: set = set()
    for _, path, p in read_objects(spec.get("ports"), errors, "spec.ports"):
        ok = check_port_number(p.get("port"), errors, f"{path}.port")
        proto = check_protocol(p.get("protocol"), errors, f"{path}.protocol")
        tp = p.get("targetPort")
        if isinstance(tp, str):          # IntOrString: a string is a port name, never digits
            ok = check_port_name(tp, errors, f"{path}.targetPort") and ok
        elif tp is not None:
            ok = check_port_number(tp, errors, f"{path}.targetPort") and ok
        pname = p.get("name")
        if pname is not None and not isinstance(pname, str):
            errors.add(f"{path}.name", "must be a string")
        elif len(spec.get("ports") or ()) > 1 and not pname:
            errors.add(f"{path}.name", "Required value")      # several ports: each is named
        node_port = _node_port(p.get("nodePort"), stype, errors, f"{path}.nodePort")
        if ok and (p["port"], proto) in seen:
            errors.add(path, f"Duplicate value: {{port: {p['port']}, protocol: {proto}}}")
            ok = False
        if ok:
            seen.add((p["port"], proto))
            ports.append(ServicePort(p["port"], proto, pname or None, tp, node_port))
    headless = spec.get("clusterIP") == "None"
    ips = []
    raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    for i, r in enumerate(read_list(raw, errors, "spec.clusterIPs")):
        if r == "None":
            continue
        ip = parse_ip(r, errors, f"spec.clusterIPs[{i}]")
        if ip is not None:
            ips.append(ip)
    external = [ip for i, r in enumerate(read_list(spec.get("externalIPs"), errors, "spec.externalIPs"))
                if (ip := parse_ip(r, errors, f"spec.externalIPs[{i}]")) is not None]
    affinity = spec.get("sessionAffinity") or "None"
    if affinity not in ("None", "ClientIP"):
        errors.add("spec.sessionAffinity", f'Unsupported value: {affinity!r}: supported values: "ClientIP", "None"')
    timeout = DEFAULT_AFFINITY_TIMEOUT
    cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}) \
        if isinstance(spec.get("sessionAffinityConfig"), dict) else {}
    if isinstance(cfg, dict) and cfg.get("timeoutSeconds") is not None:
        t = cfg["timeoutSeconds"]
        if isinstance(t, bool) or not isinstance(t, int) or not 0 < t <= 86400:
            errors.add("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                       f"Invalid value: {t!r}: must be greater than 0 and less than 86400")
        else:
            timeout = t
    # A LoadBalancer's ingress IPs (status, as `kubectl get -o yaml` prints them) are the
    # Service's addresses like its externalIPs: kube-proxy answers them the same way.
    status = doc.get("status") if isinstance(doc.get("status"), dict) else {}
    lb = status.get("loadBalancer") if isinstance(status.get("loadBalancer"), dict) else {}
    for i, ing in enumerate(read_list(lb.get("ingress"), errors, "status.loadBalancer.ingress")):
        if isinstance(ing, dict) and ing.get("ip") is not None:
            ip = parse_ip(ing["ip"], errors, f"status.loadBalancer.ingress[{i}].ip")
            if ip is not None and stype == "LoadBalancer" and ip not in external:
                external.append(ip)
    pnr = spec.get("publishNotReadyAddresses", False)
    return Service(namespace, name, selector, tuple(ports), tuple(ips), headless, stype, tuple(external),
                   affinity, timeout, pnr is True)


def _node_port(value, stype: str, errors, path: str) -> Optional[int]:
    if value is None or value == 0:
        return None
    if stype not in ("NodePort", "LoadBalancer"):
        errors.add(path, f"Forbidden: may not be used when `type` is '{stype}'")
        return None
    lo, hi = NODE_PORT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        errors.add(path, f"Invalid value: {value!r}: provided port is not in the valid range. "
                   f"The range of valid ports is {lo}-{hi}")
        return None
    return value


def parse_endpointslice(doc, errors) -> Optional[EndpointSlice]:
    name, namespace, labels = read_metadata(doc, errors, namespaced=True)
    check_dns_subdomain(name, errors, "metadata.name")
    at = doc.get("addressType")
    if at not in ("IPv4", "IPv6", "FQDN"):
        errors.add("addressType", f"Unsupported value: {at!r}: supported values: \"FQDN\", \"IPv4\", \"IPv6\"")
    endpoints = []
    for i, _, ep in read_objects(doc.get("endpoints"), errors, "endpoints"):
        cond = ep.get("conditions") or {}
        ready = cond.get("ready") if isinstance(cond, dict) else None
        if ready is not None and not isinstance(ready, bool):
            errors.add(f"endpoints[{i}].conditions.ready", f"Invalid value: {ready!r}: must be true or false")
            ready = None
        addresses = []
        for j, a in enumerate(read_list(ep.get("addresses"), errors, f"endpoints[{i}].addresses")):
            if at == "FQDN":
                continue
            ip = parse_ip(a, errors, f"endpoints[{i}].addresses[{j}]")
            if ip is not None:
                if (at == "IPv4") != (ip.version == 4):
                    errors.add(f"endpoints[{i}].addresses[{j}]", f"Invalid value: {a!r}: must be an {at} address")
                else:
                    addresses.append(ip)
        if addresses:
            endpoints.append(SliceEndpoint(tuple(addresses), ready))
    ports = []
    for i, _, p in read_objects(doc.get("ports"), errors, "ports"):
        number = p.get("port")
        ok = number is None or check_port_number(number, errors, f"ports[{i}].port")
        proto = check_protocol(p.get("protocol"), errors, f"ports[{i}].protocol")
        if ok:
            ports.append(SlicePort(number, proto, p.get("name") or None))
    return EndpointSlice(namespace, name, labels.get("kubernetes.io/service-name"),
                         tuple(endpoints), tuple(ports))
