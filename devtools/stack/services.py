"""Start the local stand-ins as child processes, wait until they say they are ready, stop them.

A stand-in that does not come up raises StackError with its last output, so tests that need it fail
rather than skip.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

from devtools.entra.server import IDENTITY_HEADER_FILE

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# The app's local settings, as `func start` reads them, and the sample the first run makes them from.
LOCAL_SETTINGS = ROOT / "local.settings.json"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"
# Azurite's documented development account; the key is public and only opens the local emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT_SECONDS = 60


class StackError(RuntimeError):
    """A stand-in did not start."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen | None  # None for a service started elsewhere, which stop() leaves running
    url: str
    details: dict[str, str] = field(default_factory=dict)

    def stop(self, grace_seconds: float = 15) -> None:
        """Ask the process to stop, and kill it after ``grace_seconds``.

        SIGINT, not SIGTERM: Azurite ignores SIGTERM while clients hold keep-alive connections, and
        killing it loses what it has not yet written to disk (a throwaway test store may pass 0).
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(name: str, argv: list[str], ready: re.Pattern[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> tuple[subprocess.Popen, re.Match[str]]:
    """Run ``argv`` and wait for a line of its output matching ``ready``; its output then goes on to ours."""
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    found: list[re.Match[str]] = []
    recent: collections.deque[str] = collections.deque(maxlen=20)
    seen = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not seen.is_set():
                recent.append(line.rstrip())
                match = ready.search(line)
                if match:
                    found.append(match)
                    seen.set()
            if os.environ.get("DEVSTACK_ECHO", "1") == "1":
                sys.stderr.write(f"[{name}] {line}")
        seen.set()

    threading.Thread(target=pump, name=f"{name}-output", daemon=True).start()
    if not seen.wait(START_TIMEOUT_SECONDS) or not found:
        process.kill()
        process.wait()
        raise StackError(f"{name} did not start: " + (" | ".join(recent) or "no output"))
    return process, found[0]


def start_azurite(port: int, location: Path) -> Service:
    if not AZURITE.exists():
        raise StackError(f"Azurite is not installed at {AZURITE.relative_to(ROOT)}: run `make install`")
    location.mkdir(parents=True, exist_ok=True)
    argv = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location), "--skipApiVersionCheck", "--silent"]
    process, match = start("azurite", argv, re.compile(r"successfully listens on (http://\S+)"))
    url = match.group(1)
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={url}/{AZURITE_ACCOUNT};"
    )
    return Service("azurite", process, url, {"connection_string": connection_string})


def ensure_local_settings(settings: Path) -> bool:
    """Make the app's local settings from the sample when there are none yet (a fresh clone); True when made."""
    if settings.exists():
        return False
    shutil.copyfile(SAMPLE_SETTINGS, settings)
    return True


def start_localvault(port: int, token_port: int, cert_dir: Path, challenge_resource: str | None = None,
                     sign_latency_ms: float = 0.0, delete_latency_ms: float | None = None,
                     recover_latency_ms: float | None = None, throttle_scale: float | None = None) -> Service:
    """localvault; deletions and recoveries settle after localvault's short default delays unless given others
    (Key Vault's own are 1-5 s and about 1 s). With ``throttle_scale`` it holds to Key Vault's service limits
    times that scale; without, it never throttles."""
    argv = [sys.executable, "-m", "devtools.vault", "--port", str(port), "--token-port", str(token_port), "--cert-dir", str(cert_dir),
            "--sign-latency-ms", str(sign_latency_ms)]
    if delete_latency_ms is not None:
        argv += ["--delete-latency-ms", str(delete_latency_ms)]
    if recover_latency_ms is not None:
        argv += ["--recover-latency-ms", str(recover_latency_ms)]
    if challenge_resource is not None:
        argv += ["--challenge-resource", challenge_resource]
    if throttle_scale is not None:
        argv += ["--throttle-scale", str(throttle_scale)]
    process, match = start("localvault", argv, re.compile(r"localvault ready vault=(\S+) token=(\S+)"))
    return Service("localvault", process, match.group(1), {"token_url": match.group(2), "ca_bundle": str(cert_dir / "ca.pem")})


def start_entra(port: int, msi_port: int, state_dir: Path) -> Service:
    """localentra; ``url`` is its authority. The managed-identity secret (App Service's IDENTITY_HEADER) is new
    at each start, and read from the file it writes in ``state_dir``."""
    argv = [sys.executable, "-m", "devtools.entra", "--port", str(port), "--msi-port", str(msi_port),
            "--state-dir", str(state_dir)]
    process, match = start("localentra", argv, re.compile(r"localentra ready authority=(\S+) tenant=(\S+) msi=(\S+)"))
    return Service("localentra", process, match.group(1), {
        "tenant_id": match.group(2),
        "ca_bundle": str(state_dir / "ca.pem"),
        "msi_endpoint": match.group(3),
        "msi_header": (state_dir / IDENTITY_HEADER_FILE).read_text(),
    })


def start_devhost(port: int, env: dict[str, str], no_timers: bool = False, local_settings: str = "local.settings.json") -> Service:
    """devhost serving the app in ROOT with ``env``, plus what ``local_settings`` (relative to ROOT) holds that ``env`` does not."""
    argv = [sys.executable, "-m", "devtools.host", "--port", str(port), "--settings", local_settings]
    argv += ["--no-timers"] if no_timers else []
    process, match = start("devhost", argv, re.compile(r"devhost ready (http://\S+)"), env=env)
    return Service("devhost", process, match.group(1))


def app_settings(azurite: Service, vault: Service) -> dict[str, str]:
    """App settings that point the app at the stand-ins.

    The app signs in through the vault's token endpoint as its managed identity, or through Azure's
    default credential chain when the vault has no such endpoint (a real vault). Every Key Vault
    setting is given, empty when unused, so that none comes from local.settings.json instead.
    """
    token_url = vault.details.get("token_url", "")
    return {
        "AzureWebJobsStorage": azurite.details["connection_string"],
        "KEY_VAULT_URI": vault.url,
        "KEY_VAULT_CA_BUNDLE": vault.details["ca_bundle"],
        "KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION": str(is_on_this_machine(vault.url)).lower(),
        "USE_MSI": str(bool(token_url)).lower(),
        "IDENTITY_ENDPOINT": token_url,
        "IDENTITY_HEADER": "local-development" if token_url else "",
    }


def is_on_this_machine(url: str) -> bool:
    """Whether a vault runs here: its challenge names a resource that never matches a local host name."""
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        return False
