"""Who may act as which SPIRE server: the list decides, and every refusal names the caller."""

import pytest

from shared.callers import DEFAULT_SERVER, Caller, CallerGate, CallerPermissions
from shared.errors import InvalidArgument, PermissionDenied, Unauthenticated

ONE_NAME = Caller("tenant", "00000000-0000-4000-8000-000000000001", "client-1")
STATEFUL_SET = Caller("tenant", "00000000-0000-4000-8000-000000000002", "client-2")
DEFAULT_ONLY = Caller("tenant", "00000000-0000-4000-8000-000000000003", "client-3")
STRANGER = Caller("tenant", "00000000-0000-4000-8000-00000000000f", "client-f")
PERMISSIONS = CallerPermissions(
    {
        ONE_NAME.object_id: frozenset({"spire-a"}),
        STATEFUL_SET.object_id: frozenset({"spire-0", "spire-1"}),
        DEFAULT_ONLY.object_id: frozenset({DEFAULT_SERVER}),
    },
    maintainers=frozenset({DEFAULT_ONLY.object_id}),
)


@pytest.mark.parametrize(
    "caller, requested, server",
    [
        (ONE_NAME, None, "spire-a"),  # one name: no header needed
        (ONE_NAME, "spire-a", "spire-a"),
        (STATEFUL_SET, "spire-0", "spire-0"),
        (STATEFUL_SET, "spire-1", "spire-1"),
        (DEFAULT_ONLY, None, None),
    ],
)
def test_a_caller_acts_as_a_name_it_holds(caller, requested, server):
    assert PERMISSIONS.server_for(caller, requested) == server


@pytest.mark.parametrize(
    "caller, requested, message",
    [
        (ONE_NAME, "spire-b", 'may not act as SPIRE server "spire-b"'),
        (STATEFUL_SET, "spire-a", 'may not act as SPIRE server "spire-a"'),
        (STATEFUL_SET, None, "holds several SPIRE server names"),
        (DEFAULT_ONLY, "spire-a", 'may not act as SPIRE server "spire-a"'),
        (STRANGER, None, "not in the app's SPIRE_SERVER_IDENTITIES"),
        (STRANGER, "spire-a", "not in the app's SPIRE_SERVER_IDENTITIES"),
    ],
)
def test_anything_else_is_denied_naming_the_callers_object_id(caller, requested, message):
    with pytest.raises(PermissionDenied) as error:
        PERMISSIONS.server_for(caller, requested)
    assert message in error.value.message and caller.object_id in error.value.message


def test_only_maintainers_run_maintenance():
    PERMISSIONS.check_maintainer(DEFAULT_ONLY)
    for caller in (ONE_NAME, STATEFUL_SET, STRANGER):
        with pytest.raises(PermissionDenied, match=caller.object_id):
            PERMISSIONS.check_maintainer(caller)


def test_the_gate_proves_the_caller_before_it_reads_the_server_name():
    seen = []

    def refuse(authorization):
        seen.append(authorization)
        raise Unauthenticated("no")

    gate = CallerGate(refuse, PERMISSIONS)
    with pytest.raises(Unauthenticated):
        gate.server_caller(None, "Not a valid name")  # 401 first: an unproven caller learns nothing of names
    assert seen == [None]


def test_the_gate_checks_the_names_syntax_then_the_list():
    gate = CallerGate(lambda authorization: ONE_NAME, PERMISSIONS)
    with pytest.raises(InvalidArgument):
        gate.server_caller("Bearer t", "Not_Valid-")
    with pytest.raises(PermissionDenied):
        gate.server_caller("Bearer t", "spire-b")
    assert gate.server_caller("Bearer t", None) == (ONE_NAME, "spire-a")
