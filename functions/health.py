"""Health: are the settings valid, and do Blob storage and Key Vault answer this app?

Anyone may call it, and every server of the trust domain may share the vault it checks, so an
instance checks its dependencies at most once per ``CHECK_INTERVAL`` and answers with that result in
between. Settings and a stopped server (its id blob holds another id) are reported at once; a stopped
server's blob is read again when its re-check is due, so that restoring it ends the stop.

Health runs on the worker's thread pool, which signing shares, so no call ever waits for another
caller's check: one check runs at a time, in the call that started it, and calls meanwhile answer at
once with the last result, or, before the instance's first result, with a 503 saying a check is under way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeIs

import azure.functions as func

from functions.http import handles_errors, json_response
from shared import app_context
from shared.errors import KeyManagerError, Unavailable
from shared.key_manager import KeyManager

bp = func.Blueprint()
log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 30.0
# Anonymous callers learn that a server is stopped, never which blob or server name: the log says.
STOPPED_SERVER = "a server id blob holds another server id than this instance has been using; the app's log names it"
SERVER_ID_UNAVAILABLE = "the default server's id blob cannot be read or created now; the app's log names the blob and the cause"
SHARED_SERVER_NAME = "two SPIRE server processes share one server name: its keys are not generated; the log names it"
REFRESH_INCOMPLETE = (
    "the last key refresh on this instance did not refresh the keys of {count} server(s); the log names them; "
    "the sweep keeps their keys while they call"
)
CHECK_UNDER_WAY = "this instance's first check of Blob storage and Key Vault is under way; ask again in a few seconds"
_clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class _Answer:
    status: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Checked:
    manager: KeyManager
    at: float
    answer: _Answer


_lock = threading.Lock()
_last: _Checked | None = None


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        app_context.callers()  # its settings too: with them wrong, every key call is refused
        conflicts = app_context.conflicts()
    except KeyManagerError as error:
        return _render(_unavailable("settings", error))
    if conflicts:
        return _render(_unavailable("blob_storage", Unavailable(STOPPED_SERVER)))
    return _render(_with_warnings(_dependencies(app_context.default_key_manager())))


def _with_warnings(answer: _Answer) -> _Answer:
    """A healthy answer says what touches some servers only, and never stops the others from signing:
    a server name two processes share (only its GenerateKey is refused), a refresh that missed servers."""
    if answer.status != 200:
        return answer
    warnings = []
    if app_context.instances().overlapping():
        warnings.append({"code": "server_name_shared", "message": SHARED_SERVER_NAME})
    failed_servers = app_context.last_refresh().failed_servers
    if failed_servers:
        warnings.append({"code": "refresh_incomplete", "message": REFRESH_INCOMPLETE.format(count=len(failed_servers))})
    return _Answer(200, {**answer.payload, "warnings": warnings}) if warnings else answer


def _dependencies(manager: KeyManager) -> _Answer:
    """The last check's answer while it is recent and about the same key manager; else a new check.

    A call that finds another caller's check running answers at once rather than wait for it.
    """
    global _last
    last = _last
    if _is_current(last, manager):
        return last.answer
    if not _lock.acquire(blocking=False):
        return last.answer if last is not None and last.manager is manager else _NOT_CHECKED_YET
    try:
        checked = _last
        if not _is_current(checked, manager):  # unless a check that ended just now answers already
            checked = _last = _Checked(manager, _clock(), _check(manager))
        return checked.answer
    finally:
        _lock.release()


def _is_current(last: _Checked | None, manager: KeyManager) -> TypeIs[_Checked]:
    return last is not None and last.manager is manager and _clock() - last.at < CHECK_INTERVAL_SECONDS


def _check(manager: KeyManager) -> _Answer:
    try:
        app_context.check_default_server()
    except KeyManagerError as error:
        log.warning("Health: %s", error.message)
        return _unavailable("blob_storage", Unavailable(SERVER_ID_UNAVAILABLE))
    try:
        manager.check_key_vault()
    except KeyManagerError as error:
        return _unavailable("key_vault", error)
    return _Answer(200, {"status": "ok"})


def _unavailable(dependency: str, error: KeyManagerError) -> _Answer:
    # The message names the failing setting or dependency; ids and secrets never enter it.
    return _Answer(503, {"status": "unavailable", "dependency": dependency, "error": {"code": error.code, "message": error.message}})


_NOT_CHECKED_YET = _unavailable("not_checked_yet", Unavailable(CHECK_UNDER_WAY))


def _render(answer: _Answer) -> func.HttpResponse:
    return json_response(answer.payload, status=answer.status)
