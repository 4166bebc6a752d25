"""Run a real spire-server (and spire-agent) on loopback with a given KeyManager, and call their CLIs.

Used by the end-to-end run (`make e2e`), the contract suite and the mint benchmark. Each server and
agent has its own directory (config, data, API socket, log); everything listens on 127.0.0.1 or a
Unix socket in that directory. The plugin signs in to the local Entra ID stand-in, which the local
app trusts for the identities it is started with.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devtools.entra.client import Api, LocalEntra, Principal
from devtools.stack.callers import caller_settings
from devtools.stack.services import ROOT, Service, app_settings, start_azurite, start_devhost, start_entra, start_localvault

COMMAND_TIMEOUT_SECONDS = 60
PLUGIN_BINARY = ROOT / "spire-plugin" / "bin" / "azure-kv-keymanager"  # make plugin
CLIENT_SECRET, MANAGED_IDENTITY = "client_secret", "managed_identity"
# Where a plugin signing in with a client secret reads it: its process's environment, never its configuration.
APP_SECRET_ENV = "AZURE_KV_KEYMANAGER_APP_SECRET"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SpireError(RuntimeError):
    """spire-server or spire-agent did not do what was asked; the message says what it printed."""


@dataclass(frozen=True)
class EntraSignIn:
    """How the plugin signs in to the local Entra ID as one identity, for the app's API.

    ``settings`` go into plugin_data; ``env`` into the environment of the process that runs the
    plugin: the secret, the managed-identity endpoint, or the stand-in's CA (SSL_CERT_FILE, which Go
    reads for its TLS to the stand-in).
    """

    settings: dict[str, str | bool]
    env: dict[str, str]


def entra_sign_in(entra: Service, api: Api, principal: Principal, credential: str) -> EntraSignIn:
    """Sign in as ``principal`` with a client secret, or as a managed identity through the stand-in's endpoint.

    The authority is the stand-in's 127.0.0.1 address exactly: MSAL checks the issuer its discovery
    names against it. Instance discovery would ask the public cloud about it, so it is off.
    """
    common = {"api_client_id": api.client_id, "credential": credential}
    if credential == CLIENT_SECRET:
        return EntraSignIn(
            {
                **common,
                "tenant_id": entra.details["tenant_id"],
                "app_id": principal.client_id,
                "app_secret_env": APP_SECRET_ENV,
                "authority_host": entra.url,
                "disable_instance_discovery": True,
            },
            {APP_SECRET_ENV: principal.secret or "", "SSL_CERT_FILE": entra.details["ca_bundle"]},
        )
    if credential == MANAGED_IDENTITY:
        return EntraSignIn(
            {**common, "managed_identity_client_id": principal.client_id},
            {
                "IDENTITY_ENDPOINT": entra.details["msi_endpoint"],
                "IDENTITY_HEADER": entra.details["msi_header"],
            },
        )
    raise ValueError(f"credential is {CLIENT_SECRET!r} or {MANAGED_IDENTITY!r}, not {credential!r}")


def plugin_data(app_url: str, sign_in: EntraSignIn, server_name: str | None = None) -> str:
    """The plugin's plugin_data settings, one per line: the app, the server it acts as, how it signs in."""
    server = {} if server_name is None else {"server_name": server_name}
    return _hcl_settings({"app_url": app_url, **server, **sign_in.settings})


def _hcl_settings(settings: Mapping[str, str | bool | Path], indent: str = "") -> str:
    """HCL attributes, one a line; JSON's string escapes are HCL's."""
    return "\n".join(
        f"{indent}{name} = {json.dumps(value if isinstance(value, (str, bool)) else str(value))}" for name, value in settings.items()
    )


@dataclass(frozen=True)
class PluginKeyManager:
    """The plugin, talking to the app at ``app_url`` as server ``server_name``, signed in as ``sign_in`` says."""

    binary: Path
    app_url: str
    server_name: str
    sign_in: EntraSignIn

    @property
    def env(self) -> dict[str, str]:
        return self.sign_in.env

    def hcl(self) -> str:
        settings = plugin_data(self.app_url, self.sign_in, self.server_name).replace("\n", "\n        ")
        return f"""KeyManager "azure_kv_keymanager" {{
    plugin_cmd = "{self.binary}"
    plugin_checksum = "{_sha256(self.binary)}"
    plugin_data {{
        {settings}
    }}
  }}"""


@dataclass(frozen=True)
class AzureKeyVaultKeyManager:
    """SPIRE's built-in `azure_key_vault` KeyManager (the Go SDK, straight to the vault).

    It signs in through Azure's default credential chain, so ``env`` must point it at a token
    endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER) and trust the vault's CA (SSL_CERT_FILE).
    """

    key_vault_uri: str
    key_identifier: str
    env: dict[str, str]

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

    @property
    def env(self) -> dict[str, str]:
        return {}

    def hcl(self) -> str:
        return 'KeyManager "memory" {\n    plugin_data {}\n  }'


@dataclass
class SpireProcess(abc.ABC):
    """A spire-server or spire-agent in its own directory: its process, its log, its CLI on its socket."""

    kind: ClassVar[str]  # "server" or "agent"
    binary: Path
    directory: Path
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return f"spire-{self.kind}"

    @property
    def socket_path(self) -> Path:
        return self.directory / "api.sock"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.kind}.log"

    @abc.abstractmethod
    def config(self) -> str:
        """The configuration (data and sockets in this directory)."""

    def _run(self, *flags: str, env: Mapping[str, str]) -> None:
        """Run with a fresh config; the output goes to the log (appended across restarts)."""
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        config = self.directory / f"{self.kind}.conf"
        config.write_text(self.config())
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "run", "-config", str(config), *flags],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise SpireError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.cli("healthcheck", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise SpireError(f"{self.name} was not healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise SpireError(f"{self.name} still runs after {timeout:.0f} s:\n{self.log_tail()}") from None

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
        """Run ``<binary> <command> -socketPath <ours> <flags>``; command may be "bundle show"."""
        result = subprocess.run(
            [str(self.binary), *command.split(), "-socketPath", str(self.socket_path), *flags],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        if check and result.returncode != 0:
            raise SpireError(f"{self.name} {command} failed: {result.stdout}{result.stderr}")
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(no log)"


@dataclass
class SpireServer(SpireProcess):
    """spire-server for ``trust_domain`` with ``key_manager``; agents attest to it with join tokens."""

    kind = "server"
    trust_domain: str
    key_manager: PluginKeyManager | AzureKeyVaultKeyManager | MemoryKeyManager
    ca_ttl: str = "24h"
    svid_ttl: str = "1h"
    # Kept across restarts, so that an agent finds the server where it was.
    port: int = field(default_factory=_free_port)

    def config(self) -> str:
        server = _hcl_settings(
            {
                "bind_address": "127.0.0.1",
                "bind_port": str(self.port),
                "socket_path": self.socket_path,
                "trust_domain": self.trust_domain,
                "data_dir": self.directory / "data",
                "log_level": "DEBUG",
                "ca_key_type": "ec-p256",
                "jwt_key_type": "ec-p256",
                "ca_ttl": self.ca_ttl,
                "default_x509_svid_ttl": self.svid_ttl,
                "default_jwt_svid_ttl": self.svid_ttl,
            },
            "  ",
        )
        return f"""server {{
{server}
}}

plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{self.directory / "data" / "datastore.sqlite3"}"
    }}
  }}
  {self.key_manager.hcl()}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""

    def start(self) -> None:
        self._run(env=self.key_manager.env)

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

    def join_token(self) -> str:
        """A one-time token an agent attests with; the agent's SPIFFE ID is then agent_id(token)."""
        return json.loads(self.cli("token generate", "-output", "json").stdout)["value"]

    def agent_id(self, join_token: str) -> str:
        return f"spiffe://{self.trust_domain}/spire/agent/join_token/{join_token}"

    def register_workload(self, parent_id: str, spiffe_id: str, uid: int) -> None:
        """An entry giving ``spiffe_id`` to the processes of ``uid`` on the agent ``parent_id``."""
        self.cli("entry create", "-parentID", parent_id, "-spiffeID", spiffe_id, "-selector", f"unix:uid:{uid}")


@dataclass
class SpireAgent(SpireProcess):
    """spire-agent attesting to ``server`` with a join token; its Workload API is its socket, the unix attestor serves it."""

    kind = "agent"
    server: SpireServer

    @property
    def trust_bundle_path(self) -> Path:
        return self.directory / "trust-bundle.pem"

    def config(self) -> str:
        agent = _hcl_settings(
            {
                "data_dir": self.directory / "data",
                "log_level": "DEBUG",
                "server_address": "127.0.0.1",
                "server_port": str(self.server.port),
                "socket_path": self.socket_path,
                "trust_bundle_path": self.trust_bundle_path,
                "trust_domain": self.server.trust_domain,
            },
            "  ",
        )
        return f"""agent {{
{agent}
}}

plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "memory" {{
    plugin_data {{}}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"""

    def attest(self, join_token: str) -> None:
        """Start, attest with ``join_token`` and wait until the Workload API answers.

        The agent trusts the server's bundle of now, rather than its first answer (insecure_bootstrap).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.trust_bundle_path.write_text(self.server.bundle_pem())
        self._run("-joinToken", join_token, env={})
        self.wait_healthy()

    def fetch_x509(self, into: Path) -> tuple[Path, Path]:
        """This process's X.509-SVID through the Workload API, written into ``into``: (SVID, bundle) PEM paths."""
        into.mkdir(parents=True, exist_ok=True)
        self.cli("api fetch x509", "-write", str(into))
        return into / "svid.0.pem", into / "bundle.0.pem"

    def fetch_jwt(self, audience: str) -> str:
        """This process's JWT-SVID for ``audience`` through the Workload API."""
        fetched = json.loads(self.cli("api fetch jwt", "-audience", audience, "-output", "json").stdout)
        return fetched[0]["svids"][0]["svid"]


@dataclass
class LocalApp:
    """The app on devhost over Azurite and localvault, set for one trust domain, its callers proven by the local Entra ID.

    ``identities`` are the service principals registered for it, by name; the app lets those that
    local_app was given act as their server names, and no other.
    """

    azurite: Service
    vault: Service
    entra_service: Service
    entra: LocalEntra
    api: Api
    env: dict[str, str]
    identities: dict[str, Principal] = field(default_factory=dict)
    devhost: Service = field(init=False)

    def launch_devhost(self, port: int = 0, timers: bool = False) -> None:
        """Start the app's devhost (again, after a stop, on the port it had); its timers run on schedule if asked."""
        self.devhost = start_devhost(port, {**os.environ, **self.env}, no_timers=not timers)

    def register_identity(self, name: str) -> Principal:
        """A service principal that may sign in with its secret or as a managed identity (the stand-in allows both)."""
        self.identities[name] = self.entra.register_principal(name, managed_identity=True)
        return self.identities[name]

    def sign_in(self, identity: str, credential: str) -> EntraSignIn:
        return entra_sign_in(self.entra_service, self.api, self.identities[identity], credential)


@contextlib.contextmanager
def local_app(
    work: Path,
    trust_domain: str,
    identities: Mapping[str, Iterable[str]],
    vault_challenge_resource: str | None = None,
    vault_sign_latency_ms: float = 0.0,
    vault_throttle_scale: float | None = None,
    timer_schedules: Mapping[str, str] | None = None,
) -> Iterator[LocalApp]:
    """Start the local stack in ``work`` for ``trust_domain``; stop it on exit.

    ``identities`` names the identities to register and the server names each may act as. The vault
    holds to Key Vault's limits times ``vault_throttle_scale`` when given; with ``timer_schedules``
    (REFRESH_KEYS_SCHEDULE, SWEEP_KEYS_SCHEDULE) the app's timers run on them, else not at all.
    """
    os.environ.setdefault("DEVSTACK_ECHO", "0")
    with contextlib.ExitStack() as stack:
        azurite = start_azurite(0, work / "azurite")
        stack.callback(azurite.stop, 0)
        vault = start_localvault(
            0, 0, work / "localvault", vault_challenge_resource, vault_sign_latency_ms, throttle_scale=vault_throttle_scale
        )
        stack.callback(vault.stop)
        entra_service = start_entra(0, 0, work / "localentra")
        stack.callback(entra_service.stop)
        entra = LocalEntra(entra_service)
        env = {**app_settings(azurite, vault), "TRUST_DOMAIN": trust_domain, "KEY_METADATA_BLOB": "spire/key-metadata"}
        app = LocalApp(azurite, vault, entra_service, entra, entra.register_api(), env)
        listed = {app.register_identity(name).object_id: names for name, names in identities.items()}
        env.update(caller_settings(entra, app.api, listed))
        env.update(timer_schedules or {})
        app.launch_devhost(timers=timer_schedules is not None)
        stack.callback(lambda: app.devhost.stop())
        yield app


def bundle_authority_keys(bundle_pem: str) -> set[bytes]:
    """The DER SubjectPublicKeyInfo of each X.509 authority in a PEM bundle."""
    return {spki(certificate) for certificate in x509.load_pem_x509_certificates(bundle_pem.encode())}


def spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def binaries() -> tuple[Path, Path]:
    """spire-server (SPIRE_SERVER names what `make spire-server` built) and the plugin (`make plugin`)."""
    if not PLUGIN_BINARY.is_file():
        raise SpireError(f"no plugin at {PLUGIN_BINARY.relative_to(ROOT)}: run make plugin")
    return spire_binary("SPIRE_SERVER"), PLUGIN_BINARY


def spire_binary(variable: str) -> Path:
    """The spire-server or spire-agent that ``variable`` (SPIRE_SERVER, SPIRE_AGENT) names: make sets it."""
    binary = Path(os.environ.get(variable, ""))
    if not binary.is_file():
        raise SpireError(f"{variable} does not name a SPIRE binary: run this through make (make e2e, make bench)")
    return binary


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
