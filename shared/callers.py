"""Who may act as which SPIRE server, and who may run maintenance: an explicit list, set at deployment.

Entra ID issues tokens for the app's API to any service principal of the tenant that asks, so a
valid token proves only who calls. This list is what keeps every other identity out, and what keeps
one SPIRE server from acting as another. One identity may hold several server names (the pods of a
StatefulSet share one workload identity); it acts only as a name it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.errors import PermissionDenied
from shared.naming import validate_server_name

# In the list, the app's default server: the one whose plugin names no server (no X-SPIRE-Server-Name).
DEFAULT_SERVER = ""


@dataclass(frozen=True)
class Caller:
    """A caller proven by its token: its tenant, its service principal's object id, its client id."""

    tenant_id: str
    object_id: str
    client_id: str


@dataclass(frozen=True)
class CallerPermissions:
    """SPIRE_SERVER_IDENTITIES and MAINTENANCE_IDENTITIES: object id -> server names, and the maintainers."""

    server_names: Mapping[str, frozenset[str]]
    maintainers: frozenset[str] = frozenset()

    def server_for(self, caller: Caller, requested: str | None) -> str | None:
        """The server the caller acts as (None: the default server), given the name it sent, if any.

        A caller holding one name needs to send none; a caller holding several names sends the one it
        acts as. Anything else is PermissionDenied naming the caller's object id, so that an operator
        can see which identity came.
        """
        names = self.server_names.get(caller.object_id)
        if not names:
            raise PermissionDenied(
                f"caller {caller.object_id} may not act as any SPIRE server: its object id is not in the app's SPIRE_SERVER_IDENTITIES"
            )
        if requested is None:
            if DEFAULT_SERVER in names:
                return None
            if len(names) == 1:
                return next(iter(names))
            raise PermissionDenied(
                f"caller {caller.object_id} holds several SPIRE server names: send the one it acts as "
                "(X-SPIRE-Server-Name, the plugin's server_name)"
            )
        if requested not in names:
            raise PermissionDenied(
                f'caller {caller.object_id} may not act as SPIRE server "{requested}": SPIRE_SERVER_IDENTITIES does not give it that name'
            )
        return requested

    def check_maintainer(self, caller: Caller) -> None:
        if caller.object_id not in self.maintainers:
            raise PermissionDenied(
                f"caller {caller.object_id} may not run maintenance: its object id is not in the app's MAINTENANCE_IDENTITIES"
            )


class CallerGate:
    """What every key and maintenance call passes first: its caller proven, then authorized.

    ``verify`` turns an Authorization header into the Caller its token proves (raising Unauthenticated
    or Unavailable); nothing else is read or done before both steps pass.
    """

    def __init__(self, verify: Callable[[str | None], Caller], permissions: CallerPermissions) -> None:
        self._verify = verify
        self._permissions = permissions

    def server_caller(self, authorization: str | None, requested_server: str | None) -> tuple[Caller, str | None]:
        """The proven caller and the server it acts as (None: the default server)."""
        caller = self._verify(authorization)
        if requested_server is not None:
            validate_server_name(requested_server)
        return caller, self._permissions.server_for(caller, requested_server)

    def maintainer(self, authorization: str | None) -> Caller:
        caller = self._verify(authorization)
        self._permissions.check_maintainer(caller)
        return caller
