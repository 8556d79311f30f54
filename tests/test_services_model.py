"""Services in the model, as kube-proxy users rely on them (issue 8, part 1): backends
per Service port (named targetPorts per pod, EndpointSlices' own ports), readiness
and publishNotReadyAddresses, headless Services, NodePort allocation, externalIPs,
session affinity, and policy checked against the backend chosen."""

import io
import textwrap

import pytest

from pipeline.load.build import load_cluster
from pipeline.load.errors import ManifestErrors
from pipeline.model.connections import Connections, open_connection_with_ip_addresses, open_service_connection
from pipeline.model.services import service_backends

NS = "apiVersion: v1\nkind: Namespace\nmetadata: {name: s}\n"


def pod(name, ip, labels="{app: web}", ports="[{name: http, containerPort: 8080}]", ready=None):
    cond = "" if ready is None else f", conditions: [{{type: Ready, status: '{ready}'}}]"
    return (f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: s, labels: {labels}}}\n"
            f"spec: {{containers: [{{name: c, ports: {ports}}}]}}\nstatus: {{podIP: {ip}{cond}}}\n")


def svc(name, spec):
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: s}}\nspec: {spec}\n"


def cluster(text):
    c, _ = load_cluster(["-"], stdin=io.StringIO(textwrap.dedent(text)))
    return c


def errors(text) -> list[str]:
    with pytest.raises(ManifestErrors) as e:
        load_cluster(["-"], stdin=io.StringIO(text))
    return [str(x) for x in e.value.errors]


def connect(c, src, service, proto, port):
    return open_service_connection(c, Connections(), c.pods[src], service, proto, port)


WEB = svc("web", "{selector: {app: web}, clusterIP: 198.19.0.20, ports: ["
               "{name: http, port: 80, targetPort: http}, {name: raw, port: 81, targetPort: 9000}]}")


def test_a_named_target_port_is_resolved_per_pod_and_a_pod_without_it_backs_no_such_port():
    c = cluster(NS + pod("a", "198.18.0.10", ports="[{name: http, containerPort: 8080}]")
                + pod("b", "198.18.0.11", ports="[{name: http, containerPort: 8081}]")
                + pod("c", "198.18.0.12", ports="[{name: other, containerPort: 7000}]")
                + pod("client", "198.18.0.13", labels="{app: client}") + WEB)
    s = c.services["s/web"]
    http = [(b.pod, b.port) for b in service_backends(c, s, s.port("TCP", 80))]
    raw = [(b.pod, b.port) for b in service_backends(c, s, s.port("TCP", 81))]
    assert http == [("s/a", 8080), ("s/b", 8081)]
    assert raw == [("s/a", 9000), ("s/b", 9000), ("s/c", 9000)]
    v = connect(c, "s/client", "s/web", "TCP", 80)
    assert v.allowed and (v.backend, v.backend_port) == ("s/a", 8080)


def test_only_ready_pods_take_new_connections_unless_not_ready_ones_are_published():
    text = (NS + pod("a", "198.18.0.10", ready="False") + pod("b", "198.18.0.11", ready="Unknown")
            + pod("z", "198.18.0.19", ready="True") + pod("client", "198.18.0.13", labels="{app: client}"))
    c = cluster(text + WEB)
    assert connect(c, "s/client", "s/web", "TCP", 80).backend == "s/z"
    c = cluster(text.replace("ready=True", "") .replace("status: 'True'", "status: 'False'") + WEB)
    v = connect(c, "s/client", "s/web", "TCP", 80)
    assert not v.allowed and v.backend is None
    assert "has no ready backend (3 listed, none ready): rejected" in v.notes[0]
    published = WEB.replace("{selector", "{publishNotReadyAddresses: true, selector")
    assert connect(cluster(text + published), "s/client", "s/web", "TCP", 80).backend == "s/a"


SLICED = svc("ext", "{clusterIP: 198.19.0.30, ports: [{name: http, port: 80}, {name: metrics, port: 9090}]}") + """
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-http, namespace: s, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [198.18.0.10]
  conditions: {ready: false}
- addresses: [198.18.0.11]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-metrics, namespace: s, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: metrics, port: 9100, protocol: TCP}]
endpoints:
- addresses: [198.18.0.12]
  conditions: {ready: true}
"""


def test_a_slice_serves_only_its_own_ports_and_its_not_ready_endpoints_take_nothing():
    c = cluster(NS + pod("a", "198.18.0.10") + pod("b", "198.18.0.11") + pod("m", "198.18.0.12")
                + pod("client", "198.18.0.13", labels="{app: client}") + SLICED)
    s = c.services["s/ext"]
    assert [(b.pod, b.port, b.ready) for b in service_backends(c, s, s.port("TCP", 80))] == \
        [("s/a", 8080, False), ("s/b", 8080, True)]
    assert [(b.pod, b.port) for b in service_backends(c, s, s.port("TCP", 9090))] == [("s/m", 9100)]
    assert (connect(c, "s/client", "s/ext", "TCP", 80).backend_port,
            connect(c, "s/client", "s/ext", "TCP", 9090).backend) == (8080, "s/m")


def test_one_port_number_on_two_protocols_and_a_port_the_service_does_not_expose():
    dns = svc("dns", "{selector: {app: web}, clusterIP: 198.19.0.10, ports: ["
                     "{name: dns, port: 53, protocol: UDP, targetPort: 5353}, {name: dns-tcp, port: 53, targetPort: 5354}]}")
    c = cluster(NS + pod("a", "198.18.0.10") + pod("client", "198.18.0.13", labels="{app: client}") + dns)
    assert connect(c, "s/client", "s/dns", "UDP", 53).backend_port == 5353
    assert connect(c, "s/client", "s/dns", "TCP", 53).backend_port == 5354
    v = connect(c, "s/client", "s/dns", "SCTP", 53)
    assert not v.allowed and "has no port SCTP/53: dropped, never delivered" in v.notes[0]
    v = open_connection_with_ip_addresses(c, Connections(), "198.18.0.13", "198.19.0.10", "UDP", 53)
    assert v.allowed and v.backend == "s/a" and v.backend_port == 5353


def test_policy_is_checked_against_the_backend_chosen_not_the_service_address():
    """As upstream's NetworkPolicy e2e probes through Services: an ipBlock allowing the
    backend pod's /32 admits a connection through the ClusterIP; one covering only the
    Service range does not."""
    base = NS + pod("a", "198.18.0.10") + pod("client", "198.18.0.13", labels="{app: client}") + WEB
    egress = ("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: e, namespace: s}}\n"
              "spec: {{podSelector: {{matchLabels: {{app: client}}}}, policyTypes: [Egress], "
              "egress: [{{to: [{{ipBlock: {{cidr: {}}}}}]}}]}}\n")
    assert connect(cluster(base + egress.format("198.18.0.10/32")), "s/client", "s/web", "TCP", 80).allowed
    v = connect(cluster(base + egress.format("198.19.0.0/16")), "s/client", "s/web", "TCP", 80)
    assert not v.allowed and v.egress.policies == ["s/e"]


def test_a_pod_its_own_service_sends_back_to_itself_is_not_policed_another_backend_is():
    """Hairpin: as its own address (kube-proxy makes it node traffic, Cilium skips policy
    for it); through the same Service to another backend, policy decides."""
    deny = ("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: d, namespace: s}\n"
            "spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n")
    c = cluster(NS + pod("a", "198.18.0.10") + pod("b", "198.18.0.11") + WEB + deny)
    backends = {b.pod: b for b in service_backends(c, c.services["s/web"], c.services["s/web"].port("TCP", 80))}
    own = open_service_connection(c, Connections(), c.pods["s/a"], "s/web", "TCP", 80, backends["s/a"])
    assert own.allowed and own.backend == "s/a" and own.egress is None
    assert any("own address" in n for n in own.notes)
    other = open_service_connection(c, Connections(), c.pods["s/a"], "s/web", "TCP", 80, backends["s/b"])
    assert not other.allowed and other.egress.policies == ["s/d"]


def test_headless_services_have_no_virtual_ip():
    c = cluster(NS + pod("a", "198.18.0.10") + pod("client", "198.18.0.13", labels="{app: client}")
                + svc("h", "{clusterIP: None, selector: {app: web}, ports: [{port: 80}]}"))
    assert c.plane.lookup_service_to_address_mappings("s/h") == []
    v = connect(c, "s/client", "s/h", "TCP", 80)
    assert not v.allowed and "headless" in v.notes[0]


def test_node_ports_given_allocated_and_refused_and_external_ips():
    text = NS + pod("a", "198.18.0.10") + \
        svc("b", "{type: NodePort, selector: {app: web}, ports: [{name: x, port: 80}, {name: y, port: 81, nodePort: 30000}]}") + \
        svc("c", "{type: LoadBalancer, selector: {app: web}, ports: [{port: 80}], externalIPs: [198.18.200.1]}")
    c = cluster(text)
    assert [p.node_port for p in c.services["s/b"].ports] == [30001, 30000]
    assert [p.node_port for p in c.services["s/c"].ports] == [30002]
    assert c.plane.lookup_address_to_service_mapping("cluster", "198.18.200.1") == "s/c"
    assert cluster(NS + WEB).services["s/web"].ports[0].node_port is None
    errs = errors(NS + svc("b", "{type: NodePort, ports: [{port: 80, nodePort: 80}]}")
                  + svc("c", "{ports: [{port: 80, nodePort: 30005}]}"))
    assert errs == [
        "-:1:spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767",
        "-:2:spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    assert errors(NS + svc("d", "{type: NodePort, ports: [{port: 80, nodePort: 30006}]}")
                  + svc("e", "{type: NodePort, ports: [{port: 81, nodePort: 30006}]}")) == [
        "-:2:spec.ports[0].nodePort: Invalid value: 30006: provided port is already allocated (to service s/d)"]
    assert errors(NS + pod("a", "198.18.0.10") + svc("f", "{externalIPs: [198.18.0.10], ports: [{port: 80}]}")) == [
        "-:2:spec.externalIPs[0]: Duplicate value: '198.18.0.10': already the address of pod s/a"]


def test_service_fields_refused_as_the_api_server_refuses_them():
    errs = errors(NS + svc("a", "{type: Nodeport, ports: [{port: 80}, {port: 81}]}")
                  + svc("b", "{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}, "
                             "ports: [{port: 80}, {port: 80, name: x}]}")
                  + svc("c", "{sessionAffinity: Sticky, externalIPs: [not-an-ip], ports: [{port: 80}]}"))
    assert any(e.startswith('-:1:spec.type: Unsupported value: \'Nodeport\'') for e in errs), errs
    assert "-:1:spec.ports[0].name: Required value" in errs and "-:1:spec.ports[1].name: Required value" in errs
    assert any(e.startswith("-:2:spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0") for e in errs)
    assert "-:2:spec.ports[1]: Duplicate value: {port: 80, protocol: TCP}" in errs
    assert any(e.startswith("-:3:spec.sessionAffinity: Unsupported value: 'Sticky'") for e in errs)
    assert any(e.startswith("-:3:spec.externalIPs[0]:") for e in errs), errs
    s = cluster(NS + svc("a", "{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}, "
                              "ports: [{port: 80}]}")).services["s/a"]
    assert (s.session_affinity, s.affinity_timeout) == ("ClientIP", 60)
    assert cluster(NS + svc("a", "{ports: [{port: 80}]}")).services["s/a"].affinity_timeout == 10800


def test_from_outside_to_a_cluster_ip_an_external_ip_and_a_node_port():
    """openConnectionWithIpAddresses maps a Service address, and a node port of a node
    address, to a ready backend before policing, as the dataplane's service mapper does."""
    text = NS + pod("a", "198.18.0.10") + pod("client", "198.18.0.13", labels="{app: client}") + \
        svc("np", "{type: NodePort, selector: {app: web}, clusterIP: 198.19.0.40, externalIPs: [198.18.200.9], "
                  "ports: [{port: 80, targetPort: http, nodePort: 30080}]}") + \
        svc("none", "{type: NodePort, selector: {app: nobody}, ports: [{port: 81, nodePort: 30081}]}")
    c = cluster(text)
    for dst, port in (("198.19.0.40", 80), ("198.18.200.9", 80), ("198.19.128.1", 30080)):
        v = open_connection_with_ip_addresses(c, Connections(), "198.19.7.7", dst, "TCP", port)
        assert v.allowed and (v.backend, v.backend_port) == ("s/a", 8080), (dst, v.notes)
    v = open_connection_with_ip_addresses(c, Connections(), "198.18.0.13", "198.19.128.1", "TCP", 30080)
    assert v.allowed and v.backend == "s/a" and v.notes[0].startswith("node port 30080 of service s/np")
    v = open_connection_with_ip_addresses(c, Connections(), "198.19.7.7", "198.19.128.1", "TCP", 30081)
    assert not v.allowed and "has no ready backend: rejected" in v.notes[0]
    v = open_connection_with_ip_addresses(c, Connections(), "198.19.7.7", "198.19.0.40", "TCP", 81)
    assert not v.allowed and "has no port TCP/81: dropped" in v.notes[0]
    v = open_connection_with_ip_addresses(c, Connections(), "198.19.7.7", "198.19.128.1", "TCP", 22)
    assert not v.allowed and v.backend is None        # the node's own port: outside to node, no pod


def test_a_load_balancer_s_ingress_ips_are_its_addresses():
    c = cluster(NS + pod("a", "198.18.0.10") + """---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: s}
spec: {type: LoadBalancer, selector: {app: web}, clusterIP: 198.19.0.44, ports: [{port: 80, targetPort: http}]}
status: {loadBalancer: {ingress: [{ip: 198.18.201.1}, {hostname: lb.example}]}}
""")
    assert c.plane.lookup_address_to_service_mapping("cluster", "198.18.201.1") == "s/lb"
    v = open_connection_with_ip_addresses(c, Connections(), "198.19.7.7", "198.18.201.1", "TCP", 80)
    assert v.allowed and (v.backend, v.backend_port) == ("s/a", 8080)
    assert c.services["s/lb"].ports[0].node_port == 30000          # allocated, as for NodePort
    assert errors(NS + svc("lb", "{type: LoadBalancer, ports: [{port: 80}]}") +
                  "status: {loadBalancer: {ingress: [{ip: not-an-ip}]}}\n")[0].startswith(
        "-:1:status.loadBalancer.ingress[0].ip:")


def test_an_external_name_service_is_an_alias_without_an_address():
    c = cluster(NS + pod("client", "198.18.0.13", labels="{app: client}")
                + svc("ext", "{type: ExternalName, externalName: db.example.com}"))
    assert c.plane.lookup_service_to_address_mappings("s/ext") == []
    v = connect(c, "s/client", "s/ext", "TCP", 80)
    assert not v.allowed and "ExternalName: a DNS alias" in v.notes[0]
