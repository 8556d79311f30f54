"""Cluster DNS on real packets: `netsem up` serves names at 198.19.0.10 from a pod of
kube-system, `netsem exec` gives pods a resolv.conf (search path included) in a mount
namespace of their own, and DNS traffic is policed like any other: an egress-isolated
pod resolves only with an "allow DNS" rule."""

import json
import sys
import time

from .test_up import exec_in, up  # noqa: F401 (fixture)

RESOLVE = """
import socket, sys
for name in sys.argv[1:]:
    try:
        print(name, ",".join(sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET)})))
    except OSError as e:
        print(name, "failed")
"""


def test_pods_resolve_services_by_short_and_full_names_where_policy_allows_dns(up):  # noqa: F811
    proc, prefix, flows, port, manifests = up
    names = ["backend", "backend.shop", "backend.shop.svc.cluster.local", "db.data", "nosuch"]
    r = exec_in(prefix, "shop/frontend-0", sys.executable, "-c", RESOLVE, *names)
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {"backend": "198.19.0.2", "backend.shop": "198.19.0.2",
                   "backend.shop.svc.cluster.local": "198.19.0.2", "db.data": "198.19.0.1",
                   "nosuch": "failed"}, (r.stdout, r.stderr)
    # shop/backend is egress-isolated, and the example's policy allows it DNS
    r = exec_in(prefix, "shop/backend-0", sys.executable, "-c", RESOLVE, "db.data")
    assert r.stdout.split() == ["db.data", "198.19.0.1"], (r.stdout, r.stderr)
    # data/db-0 is egress-isolated (default-deny-all) without one: no name resolves
    r = exec_in(prefix, "data/db-0", sys.executable, "-c", RESOLVE, "backend.shop")
    assert r.stdout.split() == ["backend.shop", "failed"], (r.stdout, r.stderr)
    deadline, denied = time.monotonic() + 10, []
    while time.monotonic() < deadline and not denied:
        records = [json.loads(x) for x in flows.read_text().splitlines()] if flows.exists() else []
        denied = [x for x in records if x["netsem"]["reason"] == "denied_egress"
                  and x["IP"]["destination"] == "198.19.0.10"]
        time.sleep(0.2)
    assert denied and denied[0]["source"]["pod_name"] == "db-0"
    # the pod's resolv.conf lives in the command's own mount namespace, not the host's
    r = exec_in(prefix, "shop/frontend-0", "cat", "/etc/resolv.conf")
    assert r.stdout.startswith("nameserver 198.19.0.10\nsearch shop.svc.cluster.local ")
    with open("/etc/resolv.conf") as f:
        assert "198.19.0.10" not in f.read()
