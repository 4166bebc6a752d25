"""Key maintenance: refresh this server's keys and sweep abandoned ones, on timers and on demand.

The schedules are read at import, with defaults, so the app indexes without the settings. The
Functions host does not run a timer whose schedule it cannot read; the sweep then refuses to run,
so that it never deletes keys while the refresh stands still.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection
from typing import TypeVar
from urllib.parse import unquote_plus, urlsplit

import azure.functions as func

from functions.http import AUTHORIZATION_HEADER, audit, handles_errors, json_response
from shared import app_context
from shared.errors import ConfigurationError, InvalidArgument, KeyManagerError
from shared.maintenance import Failure, RefreshReport, SweepReport
from shared.naming import server_label
from shared.settings import DEFAULT_REFRESH_KEYS_SCHEDULE, DEFAULT_SWEEP_KEYS_SCHEDULE, load_schedules
from shared.vault_port import KeySummary

log = logging.getLogger(__name__)
T = TypeVar("T")
bp = func.Blueprint()

REFRESH_KEYS_SCHEDULE = os.environ.get("REFRESH_KEYS_SCHEDULE") or DEFAULT_REFRESH_KEYS_SCHEDULE
SWEEP_KEYS_SCHEDULE = os.environ.get("SWEEP_KEYS_SCHEDULE") or DEFAULT_SWEEP_KEYS_SCHEDULE
try:
    load_schedules(os.environ)
except ConfigurationError as invalid:
    log.error("Key maintenance: %s; the sweep refuses to run until it is fixed", invalid.message)


class MaintenanceFailed(RuntimeError):
    """Raised from a timer run that failed for some keys, so the Functions runtime records a failure."""


def run_refresh() -> RefreshReport:
    report, duration_ms = _timed(refresh_used_servers)
    _log_summary("refresh", duration_ms, refreshed=len(report.refreshed), failed=len(report.failed))
    if report.failed_servers:
        # Their keys age in Key Vault; the sweep keeps them while the servers call, other deployments' sweeps may not.
        log.error("Key refresh missed servers %s: their keys were not refreshed this run", ", ".join(report.failed_servers))
    app_context.last_refresh().record(report)
    return report


def refresh_used_servers() -> RefreshReport:
    """Refresh the keys of the default server and of every named server used within STALE_KEY_AGE.

    Each server's id is confirmed against its blob first. The default server's failure stops the
    run (it is the app's own); a named server's is reported and the others go on. They all share
    the app's vault, which is listed once for all of them.
    """
    report = RefreshReport()
    listing: list[KeySummary] | None = None
    for server_name in app_context.servers_to_maintain():
        try:
            manager = app_context.key_manager_for_maintenance(server_name)
            if listing is None:
                listing = manager.list_vault()
            server_report = manager.refresh(listing)
        except KeyManagerError as error:  # a throttled or unreachable server's, too: the others still run
            if server_name is None:
                raise
            log.error("Refreshing the keys of server %s failed: %s", server_name, error.message)
            report.failed.append(Failure(f"(server {server_name})", error.message))
            report.failed_servers.append(server_label(server_name))
            continue
        report.refreshed.extend(server_report.refreshed)
        report.failed.extend(server_report.failed)
        if server_report.failed:
            report.failed_servers.append(server_label(server_name))
    return report


def run_sweep(dry_run: bool) -> SweepReport:
    # A schedule the host cannot read stops its timer: sweeping on without the refresh would delete live keys.
    load_schedules(os.environ)
    # The default server sweeps: every other server's keys, named ones included, are kept by refreshes and use.
    report, duration_ms = _timed(lambda: app_context.key_manager_for_maintenance(None).sweep(dry_run=dry_run))
    _log_summary(
        "sweep",
        duration_ms,
        dry_run=dry_run,
        candidates=len(report.candidates),
        deleted=len(report.deleted),
        failed=len(report.failed),
        cap_reached=report.cap_reached,
    )
    if report.cap_reached:
        log.warning("Sweep reached its deletion cap; the remaining stale keys wait for the next run")
    return report


@bp.function_name("refresh_keys")
@bp.timer_trigger(schedule=REFRESH_KEYS_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def refresh_keys(timer: func.TimerRequest) -> None:
    report = run_refresh()
    if report.failed:
        raise MaintenanceFailed(f"refreshing {len(report.failed)} of {len(report.failed) + len(report.refreshed)} keys failed")


@bp.function_name("sweep_stale_keys")
@bp.timer_trigger(schedule=SWEEP_KEYS_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def sweep_stale_keys(timer: func.TimerRequest) -> None:
    report = run_sweep(dry_run=False)
    if report.failed:
        raise MaintenanceFailed(f"deleting {len(report.failed)} stale keys failed; they are retried next run")


@bp.function_name("refresh_keys_now")
@bp.route(route="maintenance/refresh", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def refresh_keys_now(req: func.HttpRequest) -> func.HttpResponse:
    authorize_maintenance(req, "refresh")
    query_parameters(req, accepted=())
    return json_response(run_refresh().to_dict())


@bp.function_name("sweep_stale_keys_now")
@bp.route(route="maintenance/sweep", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def sweep_stale_keys_now(req: func.HttpRequest) -> func.HttpResponse:
    authorize_maintenance(req, "sweep")
    dry_run = query_parameters(req, accepted=("dry_run",)).get("dry_run")
    if dry_run is None:  # the sweep deletes: a real one only when asked for in so many words
        raise InvalidArgument("dry_run is required: dry_run=true reports what the sweep would delete, dry_run=false deletes it")
    if dry_run not in ("true", "false"):
        raise InvalidArgument("dry_run must be true or false")
    return json_response(run_sweep(dry_run == "true").to_dict())


def authorize_maintenance(req: func.HttpRequest, operation: str) -> None:
    """The caller, proven by its token, is one of MAINTENANCE_IDENTITIES; before anything else is read or done."""
    caller = app_context.callers().maintainer(req.headers.get(AUTHORIZATION_HEADER))
    audit.info("%s asked for by caller %s", operation, caller.object_id)


def query_parameters(req: func.HttpRequest, accepted: Collection[str]) -> dict[str, str]:
    """The query parameters as the caller sent them, each named in ``accepted``, once, with a value.

    Read from the URL itself: the Functions host drops empty values from ``req.params`` and joins
    repeated ones, so ``?dry_run=`` would reach the function as no dry_run at all.
    Anything unknown, repeated, empty or without "=" is InvalidArgument, before anything runs.
    """
    found: dict[str, str] = {}
    query = urlsplit(req.url).query
    for field in query.split("&") if query else ():
        raw_name, has_value, raw_value = field.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if name not in accepted:  # never echoed: the caller's text may be anything, a secret included
            accepts = f"only {', '.join(accepted)}" if accepted else "no query parameters"
            raise InvalidArgument(f"unknown query parameter: this endpoint accepts {accepts}")
        if name in found:
            raise InvalidArgument(f"query parameter {name} is given more than once")
        if not has_value or not value:
            raise InvalidArgument(f"query parameter {name} has no value")
        found[name] = value
    return found


def _timed(run: Callable[[], T]) -> tuple[T, int]:
    started = time.monotonic()
    result = run()
    return result, round((time.monotonic() - started) * 1000)


def _log_summary(operation: str, duration_ms: int, **counts: object) -> None:
    fields = {"operation": operation, "duration_ms": duration_ms, **counts}
    log.info(
        "Key %s finished: %s",
        operation,
        " ".join(f"{name}={value}" for name, value in fields.items()),
        extra={"custom_dimensions": fields},
    )
