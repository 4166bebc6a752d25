"""The load run's arithmetic (nothing runs here): a phase's figures from its calls, and recovery."""

from __future__ import annotations

from benchmarks.load import Call, failure_code, recovery_seconds, signs_per_second, summarize


def test_the_limit_is_the_key_budget_per_second_times_the_scale():
    assert signs_per_second(1.0) == 400.0
    assert signs_per_second(0.1) == 40.0


def test_a_phase_counts_the_calls_it_offered_and_the_mints_it_served():
    calls = [
        Call(0.5, 0.01, "OK"),
        Call(1.0, 0.02, "OK"),
        Call(1.5, 3.0, "OK"),  # offered in the phase, served after it
        Call(1.9, 0.5, "ResourceExhausted", "the vault is busy: retry after 2 s\ndetails"),
        Call(2.5, 0.01, "OK"),  # the next phase's
    ]
    result = summarize("plugin", "100%", calls, 0.0, 2.0, limit=2.0, offered=2.0, vault_requests=3)
    assert result.goodput_per_second == 1.0  # two mints served within the 2 s
    assert result.failures == {"ResourceExhausted": 1}
    assert result.failure_messages == ["the vault is busy: retry after 2 s"]
    assert result.longest_wait_s == 3.0
    assert result.vault_requests_per_mint == 1.5
    assert result.p50_ms == 20.0


def test_a_phase_that_served_nothing_has_no_requests_per_mint():
    result = summarize("plugin", "200%", [Call(0.1, 30.0, "DeadlineExceeded")], 0.0, 1.0, 1.0, 2.0, vault_requests=5)
    assert result.vault_requests_per_mint is None and result.p50_ms is None


def test_recovery_ends_with_the_last_call_after_the_drop_that_failed_or_was_slow():
    calls = [
        Call(9.0, 5.0, "OK"),  # before the drop: the overload's
        Call(10.5, 2.0, "OK"),  # slow: ends 2.5 s after the drop
        Call(11.0, 0.1, "Unavailable"),  # failed: ends 1.1 s after
        Call(12.0, 0.01, "OK"),
    ]
    assert recovery_seconds(calls, drop=10.0) == 2.5
    assert recovery_seconds([Call(10.5, 0.01, "OK")], drop=10.0) == 0.0


def test_a_failure_is_counted_under_spires_code_and_the_key_managers_it_quotes():
    message = "failed to sign X509-SVID: rpc error: code = ResourceExhausted desc = keymanager(azure_kv_keymanager): retry after 2 s"
    assert failure_code(Call(0.0, 1.0, "Internal", message)) == "Internal (ResourceExhausted)"
    assert failure_code(Call(0.0, 30.0, "DeadlineExceeded", "context deadline exceeded")) == "DeadlineExceeded"
