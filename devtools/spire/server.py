"""Run a real spire-server on loopback with a given KeyManager, and call its CLI.

Used by the end-to-end run (`make e2e`) and the mint benchmark. Each server has its own directory
(config, data, API socket, log); it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devtools.stack.services import ROOT, Service, app_settings, start_azurite, start_devhost, start_localvault

COMMAND_TIMEOUT_SECONDS = 60
PLUGIN_BINARY = ROOT / "spire-plugin" / "bin" / "azure-kv-keymanager"  # make plugin


class SpireError(RuntimeError):
    """spire-server did not do what was asked; the message says what it printed."""


@dataclass(frozen=True)
class PluginKeyManager:
    """The plugin, talking to the app at ``app_url`` as server ``server_name``."""

    binary: Path
    app_url: str
    server_name: str
    function_key_env: str | None = None

    def hcl(self) -> str:
        checksum = _sha256(self.binary)
        key = f'\n        function_key_env = "{self.function_key_env}"' if self.function_key_env else ""
        return f"""KeyManager "azure_kv_keymanager" {{
    plugin_cmd = "{self.binary}"
    plugin_checksum = "{checksum}"
    plugin_data {{
        app_url = "{self.app_url}"
        server_name = "{self.server_name}"{key}
    }}
  }}"""


@dataclass(frozen=True)
class AzureKeyVaultKeyManager:
    """SPIRE's built-in `azure_key_vault` KeyManager (the Go SDK, straight to the vault).

    It signs in through Azure's default credential chain, so the server's environment must point it
    at a token endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER) and trust the vault's CA (SSL_CERT_FILE).
    """

    key_vault_uri: str
    key_identifier: str

    def hcl(self) -> str:
        return f"""KeyManager "azure_key_vault" {{
    plugin_data {{
        key_vault_uri = "{self.key_vault_uri}"
        key_identifier_value = "{self.key_identifier}"
    }}
  }}"""


@dataclass(frozen=True)
class MemoryKeyManager:
    """SPIRE's built-in in-memory KeyManager: the floor the plugin is measured against."""

    def hcl(self) -> str:
        return 'KeyManager "memory" {\n    plugin_data {}\n  }'


@dataclass
class SpireServer:
    binary: Path
    directory: Path
    trust_domain: str
    key_manager: PluginKeyManager | AzureKeyVaultKeyManager | MemoryKeyManager
    ca_ttl: str = "24h"
    svid_ttl: str = "1h"
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "api.sock"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def write_config(self) -> Path:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.conf"
        config.write_text(f"""server {{
  bind_address = "127.0.0.1"
  bind_port = "{_free_port()}"
  socket_path = "{self.socket_path}"
  trust_domain = "{self.trust_domain}"
  data_dir = "{self.directory / 'data'}"
  log_level = "DEBUG"
  ca_key_type = "ec-p256"
  jwt_key_type = "ec-p256"
  ca_ttl = "{self.ca_ttl}"
  default_x509_svid_ttl = "{self.svid_ttl}"
  default_jwt_svid_ttl = "{self.svid_ttl}"
}}

plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{self.directory / 'data' / 'datastore.sqlite3'}"
    }}
  }}
  {self.key_manager.hcl()}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
""")
        return config

    def start(self) -> None:
        """Start the server; its output goes to server.log (appended across restarts)."""
        config = self.write_config()
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "run", "-config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SpireError(f"spire-server exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.cli("healthcheck", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise SpireError(f"spire-server was not healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise SpireError(f"spire-server still runs after {timeout:.0f} s:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cli(self, command: str, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``spire-server <command> -socketPath <ours> <flags>``; command may be "bundle show"."""
        result = subprocess.run(
            [str(self.binary), *command.split(), "-socketPath", str(self.socket_path), *flags],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
        )
        if check and result.returncode != 0:
            raise SpireError(f"spire-server {command} failed: {result.stdout}{result.stderr}")
        return result

    def bundle_pem(self) -> str:
        return self.cli("bundle show", "-format", "pem").stdout

    def bundle_jwks(self) -> dict:
        return json.loads(self.cli("bundle show", "-format", "spiffe").stdout)

    def mint_x509(self, spiffe_id: str, into: Path) -> Path:
        """Mint an X.509-SVID into ``into``; returns the SVID certificate's path."""
        into.mkdir(parents=True, exist_ok=True)
        self.cli("x509 mint", "-spiffeID", spiffe_id, "-write", str(into))
        return into / "svid.pem"

    def mint_jwt(self, spiffe_id: str, audience: str) -> str:
        return self.cli("jwt mint", "-spiffeID", spiffe_id, "-audience", audience).stdout.strip()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalApp:
    """The app on devhost over Azurite and localvault, set for one trust domain."""

    azurite: Service
    vault: Service
    env: dict[str, str]
    devhost: Service = field(init=False)

    def launch_devhost(self, port: int = 0) -> None:
        """Start the app's devhost (again, after a stop, on the port it had)."""
        self.devhost = start_devhost(port, {**os.environ, **self.env}, no_timers=True)


@contextlib.contextmanager
def local_app(work: Path, trust_domain: str, vault_challenge_resource: str | None = None,
              vault_sign_latency_ms: float = 0.0) -> Iterator[LocalApp]:
    """Start the local stack in ``work`` for ``trust_domain``; stop it on exit."""
    os.environ.setdefault("DEVSTACK_ECHO", "0")
    with contextlib.ExitStack() as stack:
        azurite = start_azurite(0, work / "azurite")
        stack.callback(azurite.stop, 0)
        vault = start_localvault(0, 0, work / "localvault", vault_challenge_resource, vault_sign_latency_ms)
        stack.callback(vault.stop)
        env = {**app_settings(azurite, vault), "TRUST_DOMAIN": trust_domain, "KEY_METADATA_BLOB": "spire/key-metadata"}
        app = LocalApp(azurite, vault, env)
        app.launch_devhost()
        stack.callback(lambda: app.devhost.stop())
        yield app


def bundle_authority_keys(bundle_pem: str) -> set[bytes]:
    """The DER SubjectPublicKeyInfo of each X.509 authority in a PEM bundle."""
    return {spki(certificate) for certificate in x509.load_pem_x509_certificates(bundle_pem.encode())}


def spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def binaries() -> tuple[Path, Path]:
    """spire-server (SPIRE_SERVER names what `make spire-server` built) and the plugin (`make plugin`)."""
    server = Path(os.environ.get("SPIRE_SERVER", ""))
    if not server.is_file():
        raise SpireError("SPIRE_SERVER does not name a spire-server binary: run this through make (make e2e, make bench)")
    if not PLUGIN_BINARY.is_file():
        raise SpireError(f"no plugin at {PLUGIN_BINARY.relative_to(ROOT)}: run make plugin")
    return server, PLUGIN_BINARY


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
