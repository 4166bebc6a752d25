"""How the app's Key Vault client sends: within the caller's deadline, within a retry budget, and
not at all while Key Vault has asked this instance to wait.

``key_client`` builds the KeyClient with these; ``key_vault_calls`` runs one invocation's requests
under its deadline and tells whether a create it sent may still make a key version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.keyvault.keys import KeyClient

from shared.errors import KeyManagerError, ResourceExhausted, Unavailable
from shared.key_vault_errors import DEFAULT_RETRY_AFTER_SECONDS, is_name_in_transition, key_vault_error
from shared.key_vault_hold_off import HoldOff, Limit, limit_of
from shared.key_vault_telemetry import RequestTelemetry


@dataclass
class KeyVaultCalls:
    """One invocation's Key Vault requests: none is sent after ``send_by`` (``time.monotonic()``),
    and whether a create it sent may have made a new key version current, now or later."""

    send_by: float | None
    create_may_have_landed: bool = False
    # The turn the caller was given when it was held back before (``HeldOff.turn``): the first
    # request counting against the limit it was reserved in takes it.
    turn: str | None = None
    # The limit whose turn the invocation took: its other requests of that limit go in that turn too.
    in_turn: Limit | None = None


_calls: ContextVar[KeyVaultCalls | None] = ContextVar("key_vault_calls", default=None)


@contextmanager
def key_vault_calls(send_by: float | None, turn: str | None = None) -> Iterator[KeyVaultCalls]:
    """Run an invocation's Key Vault requests under ``send_by`` (and in the ``turn`` the caller holds),
    and learn what its creates did."""
    calls = KeyVaultCalls(send_by, turn=turn)
    token = _calls.set(calls)
    try:
        yield calls
    finally:
        _calls.reset(token)


def current_calls() -> KeyVaultCalls | None:
    """The invocation's ``key_vault_calls``, when it runs under one."""
    return _calls.get()


class DeadlinePassed(Unavailable):
    """The caller stops waiting before a Key Vault request could be sent; none was sent."""


class HeldOff(ResourceExhausted):
    """Key Vault asked this instance to wait before sending more requests of this kind, or the caller
    waits for its turn after such a wait; none was sent."""


class BudgetedRetryPolicy(RetryPolicy):  # type: ignore[type-arg]  # azure-core types it by request and response
    """The SDK's retry policy, which never waits out a Retry-After that ends past the call's budget.

    The stock policy sleeps for any Retry-After and only then notices that its total ``timeout`` is
    spent. Here such a response goes straight back to the caller, who gets a 429 (or 503) with the
    service's Retry-After instead of a request held open for nothing. Within ``key_vault_calls``, no
    request, first or retry, is sent past its ``send_by``: the first is refused (DeadlinePassed),
    and the last answer of a retried one goes back as it is.

    A 409 about a deletion or recovery still under way is retried too, with back-off, while the
    budget lasts: Key Vault finishes them a few seconds after answering.

    A 429's Retry-After holds back this instance (``hold_off``, one per Key Vault client): until it
    ends, a call whose request counts against the limit Key Vault throttled is refused at once
    (HeldOff) with the time left, and sends nothing. The call that was throttled still waits out its
    Retry-After within its budget, and retries.

    A repeated sign is another valid signature, so POST and PATCH are retried after a lost
    connection too, not only on a 5xx as the SDK's default allows. A create is retried only when it
    cannot have made a key version: after a 429, a 409 about a name in transition, or a connection
    never made. After a read timeout, a connection lost once sent or a 5xx, Key Vault may have
    created the version or may create it still, and a second create would make another one current.
    """

    RETRY_ON_METHODS = frozenset({"GET", "POST", "PATCH", "DELETE"})

    def __init__(self, hold_off: HoldOff | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold_off = hold_off or HoldOff()

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        request.context.setdefault("retry_deadline", time.monotonic() + self.timeout)
        request.context.options.setdefault("retry_on_methods", self.RETRY_ON_METHODS)
        if not _may_send_within(0):
            raise DeadlinePassed("the caller's deadline leaves no time to ask Key Vault: nothing was sent")
        limit = limit_of(request.http_request.method, request.http_request.url)
        calls = _calls.get()
        self._take_turn(limit, calls, "nothing was sent")
        response = super().send(request)
        if response.http_response.status_code == 429 and self.hold_off.paced(limit):
            # Sending again when the hold ends would take a room from the callers queued for turns: queue too.
            self._take_turn(limit, calls, "it refused the request")
            response = super().send(request)
        return response

    def _take_turn(self, limit: Limit, calls: KeyVaultCalls | None, what_was_sent: str) -> None:
        """Return when the request may go (after a wait of a few milliseconds at most), or raise HeldOff.
        Only an invocation's caller is given a turn to come back for: a timer's run or a request outside
        ``key_vault_calls`` would never bring its ticket back, and the turn's room would go unused."""
        turn = self.hold_off.turn(
            limit, calls.turn if calls else None, reserve=calls is not None, in_turn=calls is not None and calls.in_turn is limit
        )
        if turn.taken and calls:
            calls.turn, calls.in_turn = None, limit  # a turn is taken once, for the invocation's requests of its limit
        if turn.here:
            time.sleep(turn.wait)
        elif turn.wait > 0:
            come_back = "come back with the turn after the wait" if turn.ticket else "retry after the wait"
            raise HeldOff(f"Key Vault is throttling this app's {limit.value}: {what_was_sent}, {come_back}", turn.wait, turn.ticket)

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        # Every answer passes here, retried or not: a 429 holds back this instance's other calls at once.
        request = response.http_request
        if response.http_response.status_code == 429:
            limit = limit_of(request.method, request.url)
            self.hold_off.hold(limit, self.get_retry_after(response) or DEFAULT_RETRY_AFTER_SECONDS)
            if self.hold_off.paced(limit):
                return False  # send() queues the call for a turn
        else:
            self.hold_off.counted(limit_of(request.method, request.url))
        if response.http_response.status_code == 409 and is_name_in_transition(*key_vault_error(response.http_response)):
            next_wait = self.get_backoff_time({**settings, "history": [*settings["history"], None]})
            return (
                bool(settings["total"])
                and time.monotonic() + next_wait < response.context["retry_deadline"]
                and _may_send_within(next_wait)
            )
        if not super().is_retry(settings, response):
            return False  # the common case, a success, stays cheap
        if _is_create(response.http_request) and response.http_response.status_code != 429:
            return False
        retry_after = self.get_retry_after(response)
        next_wait = retry_after or self.get_backoff_time({**settings, "history": [*settings["history"], None]})
        return not (retry_after and time.monotonic() + retry_after > response.context["retry_deadline"]) and _may_send_within(next_wait)

    def increment(
        self,
        settings: dict[str, Any],
        response: PipelineRequest[Any] | PipelineResponse[Any, Any] | None = None,
        error: Exception | None = None,
    ) -> bool:
        # On an error the SDK passes the request here as ``response``; both carry the HTTP request.
        if error is not None and response is not None and not isinstance(error, ServiceRequestError):
            # Sent but unanswered: Key Vault may have counted it, so its room frees a window from now, as an answer's would
            # (uncounted, a paced turn's room would be lost to every later caller).
            self.hold_off.counted(limit_of(response.http_request.method, response.http_request.url))
        if not super().increment(settings, response=response, error=error):
            return False
        if error is None:
            return True
        if response is not None and _is_create(response.http_request) and not isinstance(error, ServiceRequestError):
            return False
        return _may_send_within(self.get_backoff_time(settings))


class DeadlineTransport(HttpTransport):  # type: ignore[type-arg]
    """Sends nothing past the invocation's ``send_by``: the last check, made once the authentication
    step has its token, which it may have waited seconds for (a slow managed-identity endpoint)."""

    def __init__(self, transport: HttpTransport[Any, Any]) -> None:
        self._transport = transport

    def send(self, request: Any, **kwargs: Any) -> Any:
        if not _may_send_within(0):
            raise DeadlinePassed("the caller's deadline passed before the request to Key Vault could go out: nothing was sent")
        return self._transport.send(request, **kwargs)

    def sleep(self, duration: float) -> None:
        self._transport.sleep(duration)

    def open(self) -> None:
        self._transport.open()

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> DeadlineTransport:
        self._transport.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self._transport.__exit__(*args)


def key_client(
    vault_uri: str,
    credential: Any,
    transport: HttpTransport[Any, Any],
    retry_seconds: float,
    retry_total: int,
    hold_off: HoldOff | None = None,
    **options: Any,
) -> KeyClient:
    """The Key Vault client as the app uses it: retries within ``retry_seconds`` (Retry-After waits
    included), nothing sent past the caller's deadline, nothing that Key Vault would throttle, and
    each request timed (RequestTelemetry)."""
    return KeyClient(
        vault_uri,
        credential,
        transport=DeadlineTransport(transport),
        retry_policy=BudgetedRetryPolicy(hold_off, timeout=retry_seconds, retry_total=retry_total),
        per_retry_policies=[RequestTelemetry()],
        **options,
    )


def _is_create(request: Any) -> bool:
    return limit_of(request.method, str(request.url)) is Limit.KEY_CREATIONS


def _may_send_within(wait: float) -> bool:
    """Whether a request sent after ``wait`` seconds would go before the invocation's ``send_by``."""
    calls = _calls.get()
    return calls is None or calls.send_by is None or time.monotonic() + wait < calls.send_by


def created_nothing(error: KeyManagerError) -> bool:
    """Whether a failed create cannot have made a key version: never sent, or refused by Key Vault."""
    cause = error.__cause__
    if isinstance(error, (DeadlinePassed, HeldOff)) or isinstance(cause, ServiceRequestError):
        return True
    status = getattr(cause, "status_code", None) or 0
    return isinstance(cause, HttpResponseError) and 400 <= status < 500 and status != 408
