"""``python -I -m ade.sandbox.probe <spec-json>``: confine this process as a job would be and
print, as one JSON line on stdout, the layers applied, the reasons for the others and whether
the attacks the layers exist for really fail. Used by :func:`ade.sandbox.detect_layers`."""

from __future__ import annotations

import json
import socket
import sys

from ade.sandbox._sys import landlock_abi
from ade.sandbox.confine import confine_with_report
from ade.sandbox.spec import SandboxSpec
from ade.serde import converter


def _blocked(action: object) -> bool:
    try:
        action()  # type: ignore[operator]
    except OSError:
        return True
    return False


def main() -> int:
    spec = converter.loads(sys.argv[1], SandboxSpec)
    result = confine_with_report(spec)
    checks = {
        "tcp_socket_denied": _blocked(lambda: socket.socket(socket.AF_INET).close()),
        "etc_shadow_unreadable": _blocked(lambda: open("/etc/shadow", "rb").close()),
    }
    try:
        abi = landlock_abi()
    except OSError:
        abi = 0
    report = {"applied": result.applied, "missing": result.missing, "checks": checks, "abi": abi}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
