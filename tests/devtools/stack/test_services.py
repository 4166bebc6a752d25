"""How the stack starts its services: the options it passes on."""

from __future__ import annotations

import requests

from devtools.stack.services import start_localvault


def test_localvault_throttles_only_when_given_a_scale(tmp_path) -> None:
    counters = {}
    for scale in (None, 0.05):
        service = start_localvault(0, 0, tmp_path / "certs", throttle_scale=scale)
        try:
            counters[scale] = requests.get(f"{service.url}/management/throttling", verify=service.details["ca_bundle"],
                                           timeout=5).json()
        finally:
            service.stop()
    assert counters[None] == {"enabled": False}
    assert counters[0.05]["enabled"] is True and counters[0.05]["scale"] == 0.05
