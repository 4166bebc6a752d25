"""The app's callers on the local stack: its API application in the local Entra ID, and who may call.

The app verifies the local Entra ID's tokens exactly as Entra's: only the authority (issuer and JWKS
location) and the CA it trusts for it differ, by setting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from devtools.entra.client import Api, LocalEntra, Principal
from devtools.stack.services import Service

# What the local SPIRE server's identity may act as under `make run`: the default server (a plugin
# without server_name) and the names the README's examples use.
LOCAL_SERVER_NAMES = ("", "spire-server-0", "spire-server-1")


def caller_settings(
    entra: LocalEntra, api: Api, identities: Mapping[str, Iterable[str]], maintainers: Iterable[str] = (), token_version: int = 2
) -> dict[str, str]:
    """The app settings that make the app accept ``api``'s tokens from ``entra``.

    ``identities`` maps an object id to the server names it may act as; ``maintainers`` are object ids.
    """
    return {
        "ENTRA_TENANT_ID": entra.tenant_id,
        "ENTRA_API_CLIENT_ID": api.client_id,
        "ENTRA_TOKEN_VERSION": str(token_version),
        "ENTRA_AUTHORITY_HOST": entra.authority,
        "ENTRA_CA_BUNDLE": entra.ca_bundle,
        "SPIRE_SERVER_IDENTITIES": json.dumps({object_id: list(names) for object_id, names in identities.items()}),
        "MAINTENANCE_IDENTITIES": ",".join(maintainers),
    }


@dataclass(frozen=True)
class LocalCallers:
    """The API and the two identities of `make run`: a SPIRE server's and an operator's."""

    api: Api
    spire_server: Principal
    maintainer: Principal

    def settings(self, entra: LocalEntra) -> dict[str, str]:
        return caller_settings(entra, self.api, {self.spire_server.object_id: LOCAL_SERVER_NAMES}, [self.maintainer.object_id])


def local_callers(entra: LocalEntra, state_dir: Path) -> LocalCallers:
    """The callers registered in ``entra`` for this state directory, registered on first use.

    The local Entra ID keeps its directory between runs, so the same ids serve every `make run`.
    """
    record = state_dir / f"callers-{entra.tenant_id}.json"
    if record.exists():
        saved = json.loads(record.read_text())
        return LocalCallers(Api(**saved["api"]), Principal(**saved["spire_server"]), Principal(**saved["maintainer"]))
    callers = LocalCallers(
        entra.register_api(),
        entra.register_principal("local-spire-server", managed_identity=True),
        entra.register_principal("local-maintainer", managed_identity=True),
    )
    record.write_text(json.dumps(asdict(callers)))
    record.chmod(0o600)  # it holds the principals' local secrets
    return callers


def token_command(entra: Service, api: Api, principal: Principal) -> str:
    """A shell command that prints an access token for ``api`` as ``principal``, from the managed-identity endpoint."""
    return (
        f'curl -s -H "X-IDENTITY-HEADER: {entra.details["msi_header"]}" '
        f'"{entra.details["msi_endpoint"]}?api-version=2019-08-01&resource={api.identifier_uri}&client_id={principal.client_id}" '
        "| python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])'"
    )
