"""The API server's field validation rules that netsem enforces (apimachinery's
validation package): names, labels, IANA service names, ports, protocols, IPs, CIDRs."""

from __future__ import annotations

import ipaddress
import re

from ..model.objects import L4_PROTOCOLS as PROTOCOLS

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _check_name(name, errors, path: str, limit: int, pattern, what: str) -> bool:
    if not isinstance(name, str) or not name:
        errors.add(path, "Required value")
        return False
    if len(name) > limit or not pattern.match(name):
        errors.add(path, f"Invalid value: {name!r}: {what}")
        return False
    return True


def check_dns_label(name, errors, path: str) -> bool:
    return _check_name(name, errors, path, 63, DNS1123_LABEL,
                       "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                       "characters or '-', and must start and end with an alphanumeric character "
                       "(at most 63 characters)")


def check_dns_subdomain(name, errors, path: str) -> bool:
    return _check_name(name, errors, path, 253, DNS1123_SUBDOMAIN,
                       "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                       "characters, '-' or '.', and must start and end with an alphanumeric character")


def check_label_key(key, errors, path: str) -> None:
    if not isinstance(key, str) or not key:
        errors.add(path, "label key must be a non-empty string")
        return
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        errors.add(path, f"Invalid value: {key!r}: prefix part must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        errors.add(path, f"Invalid value: {key!r}: name part must consist of alphanumeric "
                   "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                   "character (at most 63 characters)")


def check_label_value(value: str, errors, path: str) -> None:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        errors.add(path, f"Invalid value: {value!r}: a valid label must be an empty string or "
                   "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                   "with an alphanumeric character (at most 63 characters)")


def check_labels(labels, errors, path: str) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        errors.add(path, "must be a map of strings")
        return {}
    out = {}
    for k, v in labels.items():
        check_label_key(k, errors, path)
        if not isinstance(v, str):
            errors.add(f"{path}.{k}", "label value must be a string")
            continue
        check_label_value(v, errors, f"{path}.{k}")
        out[k] = v
    return out


def is_iana_svc_name(name: str) -> bool:
    """IANA_SVC_NAME: 1-15 characters, [a-z0-9-], at least one letter, no leading,
    trailing or double '-'."""
    return (isinstance(name, str) and 1 <= len(name) <= 15 and bool(IANA_SVC_NAME.match(name))
            and "--" not in name and any(c.isalpha() for c in name))


def check_port_name(name, errors, path: str) -> bool:
    if not is_iana_svc_name(name):
        errors.add(path, f"Invalid value: {name!r}: must be a valid IANA_SVC_NAME (at most 15 "
                   "characters, matching regex [a-z0-9]([a-z0-9-]*[a-z0-9])*, at least one "
                   "letter, no '--')")
        return False
    return True


def check_port_number(port, errors, path: str) -> bool:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errors.add(path, f"Invalid value: {port!r}: must be between 1 and 65535, inclusive")
        return False
    return True


def check_protocol(proto, errors, path: str, default: str = "TCP") -> str:
    if proto is None:
        return default
    if proto not in PROTOCOLS:
        errors.add(path, f"Unsupported value: {proto!r}: supported values: \"SCTP\", \"TCP\", \"UDP\"")
        return default
    return proto


def parse_ip(value, errors, path: str):
    if not isinstance(value, str):
        errors.add(path, f"Invalid value: {value!r}: must be a valid IP address")
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        errors.add(path, f"Invalid value: {value!r}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        errors.add(path, f"Invalid value: {value!r}: IPv4-mapped IPv6 addresses are not allowed")
        return None
    return ip


def parse_cidr(value, errors, path: str):
    if not isinstance(value, str) or "/" not in value:
        errors.add(path, f"Invalid value: {value!r}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        return None
    try:
        # Host bits are accepted as the API server historically does (net.ParseCIDR);
        # the network is what matters.
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        errors.add(path, f"Invalid value: {value!r}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        return None


# -- reading a document's common parts --------------------------------------------------

def read_metadata(doc, errors, namespaced: bool):
    """(name, namespace or None, labels) of any object."""
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        errors.add("metadata", "Required value")
        return None, None, {}
    name = meta.get("name")
    namespace = meta.get("namespace") or "default" if namespaced else None
    if namespaced:
        check_dns_label(namespace, errors, "metadata.namespace")
    labels = check_labels(meta.get("labels"), errors, "metadata.labels")
    return name, namespace, labels


def read_list(obj, errors, path: str) -> list:
    if obj is None:
        return []
    if not isinstance(obj, list):
        errors.add(path, "must be a list")
        return []
    return obj


def read_spec(doc, errors) -> dict:
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        errors.add("spec", "must be an object")
        return {}
    return spec


def read_objects(obj, errors, path: str):
    """(index, path, item) of each object of the list at `path`; an item that is not an
    object is reported and skipped."""
    for i, item in enumerate(read_list(obj, errors, path)):
        if not isinstance(item, dict):
            errors.add(f"{path}[{i}]", "must be an object")
            continue
        yield i, f"{path}[{i}]", item
