"""The address plane: the seed's mapping primitives keyed by (IP address domain,
address), switch ports for interfaces, and the rules written there once."""

import ipaddress

import pytest

from pipeline.model.addresses import (DEFAULT_DOMAIN, AddressError, AddressPlane, Attachment,
                                      NodeAddress, ServiceVIP)

ip = ipaddress.ip_address


def test_address_to_pod_mappings_per_domain():
    plane = AddressPlane()
    a = plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.1", "t/a")
    plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "2001:db8::1", "t/a")
    assert isinstance(a, Attachment) and (a.pod, a.interface, a.port) == ("t/a", "eth0", 1)
    assert plane.lookup_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.1") == "t/a"
    assert plane.lookup_pod_to_address_mappings("t/a") == [(DEFAULT_DOMAIN, ip("198.18.0.1")),
                                                           (DEFAULT_DOMAIN, ip("2001:db8::1"))]
    # An address is assigned once in its domain; another domain may repeat it (004 step 3).
    with pytest.raises(AddressError, match="already assigned to pod t/a"):
        plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.1", "t/b")
    b = plane.add_address_to_pod_mapping("blue", "198.18.0.1", "t/b", interface="net1", network="blue")
    assert b.port == 2 and plane.lookup_address_to_pod_mapping("blue", "198.18.0.1") == "t/b"
    assert plane.lookup("blue", "198.18.0.1") != plane.lookup(DEFAULT_DOMAIN, "198.18.0.1")
    # Removing the last address of an interface frees its switch port for the next one.
    plane.remove_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.1", "t/a")
    assert plane.attachment("t/a") is not None
    plane.remove_address_to_pod_mapping(DEFAULT_DOMAIN, "2001:db8::1", "t/a")
    assert plane.attachment("t/a") is None and plane.by_port(1) is None
    c = plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.3", "t/c")
    assert c.port == 1
    plane.remove_pod_to_address_mappings("t/b")
    assert plane.lookup("blue", "198.18.0.1") is None and [x.pod for x in plane.attachments()] == ["t/c"]


def test_address_to_service_and_node_mappings():
    plane = AddressPlane()
    plane.add_address_to_service_mapping(DEFAULT_DOMAIN, "198.19.0.1", "t/s")
    assert plane.lookup_address_to_service_mapping(DEFAULT_DOMAIN, "198.19.0.1") == "t/s"
    assert plane.lookup_service_to_address_mappings("t/s") == [(DEFAULT_DOMAIN, ip("198.19.0.1"))]
    assert isinstance(plane.lookup(DEFAULT_DOMAIN, "198.19.0.1"), ServiceVIP)
    with pytest.raises(AddressError, match="service t/s"):
        plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "198.19.0.1", "t/a")
    plane.remove_address_to_service_mapping(DEFAULT_DOMAIN, "198.19.0.1", "t/s")
    assert plane.lookup(DEFAULT_DOMAIN, "198.19.0.1") is None
    plane.add_address_to_service_mapping(DEFAULT_DOMAIN, "198.19.0.2", "t/s")
    plane.remove_service_to_address_mappings("t/s")
    assert plane.lookup_service_to_address_mappings("t/s") == []
    # hostNetwork pods share their node's address; their addresses are the node's.
    plane.add_host_network_pod("t/h1", DEFAULT_DOMAIN, [ip("198.19.128.1")], "n1")
    plane.add_host_network_pod("t/h2", DEFAULT_DOMAIN, [ip("198.19.128.1")], "n1")
    assert plane.lookup(DEFAULT_DOMAIN, "198.19.128.1") == NodeAddress("n1", DEFAULT_DOMAIN)
    assert plane.lookup_pod_to_address_mappings("t/h2") == [(DEFAULT_DOMAIN, ip("198.19.128.1"))]
    assert plane.attachment("t/h1") is None and plane.nodes() == [NodeAddress("n1", DEFAULT_DOMAIN)]
    with pytest.raises(AddressError, match="node n1"):
        plane.add_host_network_pod("t/h3", DEFAULT_DOMAIN, [ip("198.19.128.1")], "n2")


def test_own_address_and_resident_node_rules():
    plane = AddressPlane()
    a0 = plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.1", "t/a", node="n1")
    a1 = plane.add_address_to_pod_mapping("blue", "198.18.9.1", "t/a", interface="net1", network="blue", node="n1")
    b = plane.add_address_to_pod_mapping(DEFAULT_DOMAIN, "198.18.0.2", "t/b", node="n2")
    n1 = plane.add_node_address(DEFAULT_DOMAIN, "198.19.128.1", "n1")
    n2 = plane.add_node_address(DEFAULT_DOMAIN, "198.19.128.2", "n2")
    assert plane.own_address(a0, a1) and plane.own_address(a0, a0) and plane.own_address(n1, n1)
    assert not plane.own_address(a0, b) and not plane.own_address(n1, n2) and not plane.own_address(None, None)
    assert plane.from_resident_node(n1, a0) and plane.from_resident_node(n2, b)
    assert not plane.from_resident_node(n1, b)          # another node's pod
    assert not plane.from_resident_node(n1, a1)         # another domain
    assert not plane.from_resident_node(a0, n1) and not plane.from_resident_node(None, a0)
