"""`netsem exec`: a command inside a pod's network namespace, with the pod's
resolv.conf when the run has a cluster DNS."""

from __future__ import annotations

import ctypes
import os

from pyroute2 import netns as pr_netns

from .netns import STATE_DIR, _ns_path


def _mount_over(src: str, dst: str) -> None:
    """A private mount namespace for the calling process, with src bind-mounted on dst
    (no mount propagates back to the host)."""
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18
    if libc.unshare(CLONE_NEWNS) != 0 or \
            libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0 or \
            libc.mount(src.encode(), dst.encode(), None, MS_BIND, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"cannot mount the pod's resolv.conf on {dst}: {os.strerror(e)}")


def exec_in_pod(state: dict, key: str, argv: list[str]) -> int:
    """Runs argv inside pod `key`'s namespace (fork; setns in the child; exec) and
    returns its exit status. With a cluster DNS, the child also gets a mount namespace
    of its own with the pod's resolv.conf over /etc/resolv.conf, as `ip netns exec`
    does with /etc/netns/NAME/."""
    pod = state["pods"].get(key)
    if pod is None:
        raise LookupError(f"no pod {key!r} in run {state['prefix']}")
    path = _ns_path(pod["netns"])
    pid = os.fork()
    if pid == 0:  # child
        try:
            fd = os.open(path, os.O_RDONLY)
            pr_netns.setns(fd, flags=0)
            resolv = os.path.join(STATE_DIR, f"{state['prefix']}.dns", f"resolv.{key.split('/')[0]}.conf")
            if state.get("dns") and key != "uplink" and os.path.exists(resolv):
                if os.path.exists("/etc/resolv.conf"):
                    _mount_over(resolv, "/etc/resolv.conf")
                else:   # nothing to mount over; the host's /etc is not ours to change
                    os.write(2, b"netsem exec: no /etc/resolv.conf on this host: the pod gets no "
                                b"cluster DNS configuration\n")
            os.execvp(argv[0], argv)
        except BaseException as e:
            os.write(2, f"netsem exec: {argv[0]}: {e}\n".encode())
        os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


