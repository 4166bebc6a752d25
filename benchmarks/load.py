"""``make load``: a fleet of spire-servers on one vault held to Key Vault's limits, through the plugin and
through SPIRE's built-in ``azure_key_vault`` KeyManager, at and over the limit, then a soak.

One local stack runs localvault with its model of Key Vault's service limits, scaled (``--scale``) so
that two cores can offer twice the limit. Each KeyManager gets a fleet of real spire-servers, each
under a server name of its own (the plugin's act as ``load-plugin-N``; the built-in plugin's keys are
tagged ``load-built-in-N``). Every fleet first starts at once (a mass first start: two key creations
per server against the creations budget); then, one fleet at a time on an empty window, the mint
client (devtools/spire mintbench) offers X.509-SVID mints through the servers' APIs on an open loop,
spread over the fleet: 100% of the limit, 200%, then half of it to see how soon every mint is served
again. The servers' CA keys are EC P-256 in software, so the limit is the key budget's 4,000 signs
per 10 s times the scale, one sign per mint.

The soak runs on a stack of its own: both fleets at once, each at a quarter of the limit (the vault
at half of it), CA and JWT keys rotating through a short ``ca_ttl``, the app's refresh and sweep
timers firing every minute, and the resident memory of devhost and localvault read each minute.

    make load                                   # 60 s per load, a 10-minute soak
    make load ARGS="--seconds 20 --soak-minutes 3"
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from benchmarks.spire_mint import CHALLENGE_RESOURCE, build_mint_client, built_in_sign_in
from devtools.spire.server import (
    CLIENT_SECRET,
    AzureKeyVaultKeyManager,
    LocalApp,
    PluginKeyManager,
    SpireError,
    SpireServer,
    binaries,
    local_app,
)
from devtools.stack.services import ROOT
from devtools.vault.throttle import BUDGETS, WINDOW_SECONDS

T = TypeVar("T")
TRUST_DOMAIN = "load.example.org"
IDENTITY = "load-spire-server"
PLUGIN, BUILT_IN = "plugin + app", "built-in azure_key_vault"
# SPIRE's deadline for a call to a server (the agent's and the CLIs'): the mint client's too.
SPIRE_DEADLINE_SECONDS = 30.0
# A mint slower than this is not "served at full goodput" when judging recovery.
SERVED_SECONDS = 1.0
RECOVERY_LOAD, RECOVERY_SECONDS = 0.5, 20.0
RESULTS = ROOT / "load-results.json"
# Attempts to restart a server that did not start, and how much of an error message to keep.
RESTARTS, MESSAGE_CHARS = 3, 240
# SPIRE answers a KeyManager's failure with Internal, quoting the KeyManager's own code in its message.
KEY_MANAGER_CODE = re.compile(r"code = (\w+) desc = keymanager")
# Before a fleet's turn, the vault must have been idle this long (the previous fleet's app may still be working).
QUIET_SECONDS, QUIET_TIMEOUT_SECONDS = 3.0, 120.0
# localvault answers its counters late when it is the bottleneck (a load far over what the machine serves).
COUNTERS_TIMEOUT_SECONDS = 60


def signs_per_second(scale: float) -> float:
    """The vault's modelled limit for an EC P-256 software key's signs (one per mint), per second."""
    return BUDGETS["keys"] * scale / WINDOW_SECONDS


@dataclass(frozen=True)
class Call:
    """One mint as the client saw it: seconds since the load began, its duration, its gRPC code."""

    started: float
    elapsed: float
    code: str
    message: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


@dataclass
class PhaseResult:
    """What one KeyManager's fleet did under one offered load."""

    key_manager: str
    load: str
    offered_per_second: float
    limit_per_second: float
    goodput_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    failures: dict[str, int]
    longest_wait_s: float
    vault_requests_per_mint: float | None
    recovery_s: float | None = None
    failure_messages: list[str] = field(default_factory=list)


def summarize(
    key_manager: str, load: str, calls: list[Call], start: float, end: float, limit: float, offered: float, vault_requests: int
) -> PhaseResult:
    """The phase [start, end): the calls it offered (by start), the mints it served (by end) against the vault's requests then."""
    offered_calls = [call for call in calls if start <= call.started < end]
    served_in_phase = [call for call in calls if call.code == "OK" and start <= call.ended < end]
    succeeded = [call.elapsed for call in offered_calls if call.code == "OK"]
    failed = [call for call in offered_calls if call.code != "OK"]
    return PhaseResult(
        key_manager=key_manager,
        load=load,
        offered_per_second=round(offered, 1),
        limit_per_second=round(limit, 1),
        goodput_per_second=round(len(served_in_phase) / (end - start), 1),
        p50_ms=_percentile_ms(succeeded, 50),
        p99_ms=_percentile_ms(succeeded, 99),
        failures=dict(Counter(failure_code(call) for call in failed)),
        longest_wait_s=round(max((call.elapsed for call in offered_calls), default=0.0), 2),
        vault_requests_per_mint=round(vault_requests / len(served_in_phase), 3) if served_in_phase else None,
        failure_messages=sorted({_first_line(call.message) for call in failed})[:3],
    )


def failure_code(call: Call) -> str:
    """SPIRE's code, with the KeyManager's when SPIRE's message quotes it: "Internal (Unavailable)"."""
    quoted = KEY_MANAGER_CODE.search(call.message)
    return f"{call.code} ({quoted.group(1)})" if quoted else call.code


def recovery_seconds(calls: list[Call], drop: float) -> float:
    """Seconds from the load's drop until every mint started since is served, and fast: the end of the
    last one started after the drop that failed or took longer than SERVED_SECONDS; 0 if none did."""
    unserved = [call.ended - drop for call in calls if call.started >= drop and (call.code != "OK" or call.elapsed > SERVED_SECONDS)]
    return round(max(unserved, default=0.0), 2)


def _percentile_ms(seconds: list[float], percent: int) -> float | None:
    if len(seconds) < 2:
        return round(seconds[0] * 1000, 1) if seconds else None
    return round(statistics.quantiles(seconds, n=100, method="inclusive")[percent - 1] * 1000, 1)


class Vault:
    """localvault's throttling counters (GET /management/throttling): requests served and throttled so far."""

    def __init__(self, app: LocalApp) -> None:
        self._url = f"{app.vault.url}/management/throttling"
        self._tls = ssl.create_default_context(cafile=app.vault.details["ca_bundle"])

    def budgets(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(self._url, context=self._tls, timeout=COUNTERS_TIMEOUT_SECONDS) as response:
            return json.load(response)["budgets"]

    def requests(self) -> int:
        """Every request counted so far, a 429 included."""
        return sum(budget["served"] + budget["throttled"] for budget in self.budgets().values())

    def wait_quiet(self) -> None:
        """Until no request came for QUIET_SECONDS, then a whole window, so that the next load starts on an empty one."""
        deadline = time.monotonic() + QUIET_TIMEOUT_SECONDS
        last = self.requests()
        while time.monotonic() < deadline:
            time.sleep(QUIET_SECONDS)
            now = self.requests()
            if now == last:
                break
            last = now
        time.sleep(WINDOW_SECONDS)


def fleets(app: LocalApp, spire_server: Path, plugin: Path, work: Path, size: int, **server_settings: str) -> dict[str, list[SpireServer]]:
    """``size`` servers per KeyManager, each under a name of its own, in ``work``."""
    vault_port = urlsplit(app.vault.url).port
    built_in_env = built_in_sign_in(app)
    sign_in = app.sign_in(IDENTITY, CLIENT_SECRET)
    return {
        PLUGIN: [
            SpireServer(
                spire_server,
                work / f"plugin-{number}",
                TRUST_DOMAIN,
                PluginKeyManager(plugin, app.devhost.url, server_name(PLUGIN, number), sign_in),
                **server_settings,
            )
            for number in range(size)
        ],
        BUILT_IN: [
            SpireServer(
                spire_server,
                work / f"built-in-{number}",
                TRUST_DOMAIN,
                AzureKeyVaultKeyManager(f"https://127.0.0.1:{vault_port}", server_name(BUILT_IN, number), built_in_env),
                **server_settings,
            )
            for number in range(size)
        ],
    }


def server_name(key_manager: str, number: int) -> str:
    return f"load-{'plugin' if key_manager == PLUGIN else 'built-in'}-{number}"


@dataclass
class StartResult:
    """A fleet's mass first start: how long until every server answered, and the creations it took."""

    key_manager: str
    servers: int
    healthy: int
    seconds_to_all_healthy: float
    creates_served: int
    creates_throttled: int
    failed: list[str]
    restarts: int


def mass_start(key_manager: str, servers: list[SpireServer], vault: Vault, timeout: float) -> StartResult:
    """Start the fleet at once; then restart, one at a time on an empty window, each server that exited
    (as an orchestrator would), so that the loads find the whole fleet."""
    before = vault.budgets()["creates"]
    started = time.monotonic()
    for server in servers:
        server.start()
    healthy: dict[int, float] = {}
    failed: dict[int, str] = {}

    def wait(number: int, server: SpireServer) -> None:
        try:
            server.wait_healthy(timeout)
            healthy[number] = time.monotonic() - started
        except SpireError:  # a server that never comes up is a result, not a crash
            failed[number] = _last_error(server)

    threads = [threading.Thread(target=wait, args=(number, server)) for number, server in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = vault.budgets()["creates"]
    restarts = 0
    for number in sorted(failed):
        for _ in range(RESTARTS):
            time.sleep(WINDOW_SECONDS)
            restarts += 1
            servers[number].start()
            try:
                servers[number].wait_healthy(timeout)
                break
            except SpireError:
                continue
    return StartResult(
        key_manager,
        len(servers),
        len(healthy),
        round(max(healthy.values(), default=0.0), 1),
        after["served"] - before["served"],
        after["throttled"] - before["throttled"],
        [f"server {number}: {reason}" for number, reason in sorted(failed.items())],
        restarts,
    )


def _last_error(server: SpireServer) -> str:
    """The last error spire-server logged, its message only (the log's last line if none)."""
    lines = server.log().splitlines() or ["(no log)"]
    errors = [line for line in lines if "level=error" in line] or lines[-1:]
    return _first_line(errors[-1])


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0][:MESSAGE_CHARS] if message.strip() else ""


@contextmanager
def running(servers: Mapping[str, list[SpireServer]]) -> Iterator[None]:
    try:
        yield
    finally:
        for fleet in servers.values():
            for server in fleet:
                server.stop()


def offer(
    mint_client: Path, sockets: list[Path], phases: list[tuple[float, float]], boundary_probe: Callable[[], T] | None = None
) -> tuple[list[tuple[int, Call]], list[T]]:
    """Offer ``phases`` (mints per second, seconds) through ``sockets``; ``boundary_probe`` is called at each phase's end
    (while the load goes on) and its answers returned. The calls come back with the index of their server."""
    argv = [str(mint_client), "-trust-domain", TRUST_DOMAIN, "-phases", ",".join(f"{rate:g}@{seconds:g}" for rate, seconds in phases)]
    process = subprocess.Popen([*argv, *map(str, sockets)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    begun = time.monotonic()
    probes: list[T] = []
    if boundary_probe is not None:
        elapsed = 0.0
        for _, seconds in phases:
            elapsed += seconds
            time.sleep(max(0.0, begun + elapsed - time.monotonic()))
            probes.append(boundary_probe())
    stdout, stderr = process.communicate(timeout=sum(seconds for _, seconds in phases) + SPIRE_DEADLINE_SECONDS + 60)
    if process.returncode != 0:
        raise RuntimeError(f"mintbench failed: {stderr.strip()[-500:]}")
    calls = [
        (raw["server"], Call(raw["started_ns"] / 1e9, raw["elapsed_ns"] / 1e9, raw["code"], raw.get("message", "")))
        for raw in json.loads(stdout)["calls"]
    ]
    return calls, probes


def overload(args: argparse.Namespace, spire_server: Path, plugin: Path, mint_client: Path) -> tuple[list[StartResult], list[PhaseResult]]:
    limit = signs_per_second(args.scale)
    names = [server_name(key_manager, number) for key_manager in (PLUGIN, BUILT_IN) for number in range(args.servers)]
    starts, phases = [], []
    with (
        tempfile.TemporaryDirectory(prefix="spire-load-") as tmp,
        local_app(Path(tmp), TRUST_DOMAIN, {IDENTITY: names}, CHALLENGE_RESOURCE, vault_throttle_scale=args.scale) as app,
    ):
        vault = Vault(app)
        servers = fleets(app, spire_server, plugin, Path(tmp), args.servers)
        with running(servers):
            for key_manager, fleet in servers.items():
                _progress(f"mass first start: {len(fleet)} servers, {key_manager}")
                starts.append(mass_start(key_manager, fleet, vault, args.start_timeout))
                vault.wait_quiet()
            for key_manager, fleet in servers.items():
                _progress(f"offered loads: {key_manager}")
                phases += _loads(key_manager, fleet, vault, mint_client, limit, args.seconds)
                vault.wait_quiet()
    return starts, phases


def _loads(key_manager: str, fleet: list[SpireServer], vault: Vault, mint_client: Path, limit: float, seconds: float) -> list[PhaseResult]:
    plan = [("100%", 1.0, seconds), ("200%", 2.0, seconds), (f"{RECOVERY_LOAD:.0%} after 200%", RECOVERY_LOAD, RECOVERY_SECONDS)]
    before = vault.requests()
    calls, counts = offer(
        mint_client, [server.socket_path for server in fleet], [(limit * load, span) for _, load, span in plan], vault.requests
    )
    only_calls = [call for _, call in calls]
    results, start = [], 0.0
    requests = [before, *counts]
    for index, (label, load, span) in enumerate(plan):
        result = summarize(key_manager, label, only_calls, start, start + span, limit, limit * load, requests[index + 1] - requests[index])
        results.append(result)
        start += span
    results[1].recovery_s = recovery_seconds(only_calls, 2 * seconds)
    return results


def _progress(message: str) -> None:
    print(f"load: {message}", file=sys.stderr, flush=True)


# The soak's timers fire every minute, half a minute apart; its keys rotate every few minutes.
SOAK_SCHEDULES = {"REFRESH_KEYS_SCHEDULE": "0 * * * * *", "SWEEP_KEYS_SCHEDULE": "30 * * * * *"}
SOAK_CA_TTL, SOAK_SVID_TTL = "4m", "1m"
SOAK_LOAD = 0.5  # of the limit, shared by the two fleets


@dataclass
class SoakResult:
    """The soak: each fleet's mints, its key rotations, and the app's and the vault's memory each minute."""

    minutes: float
    phases: list[PhaseResult]
    rotations: dict[str, dict[str, int]]
    rss_mib: dict[str, list[float]]

    def rss_growth(self, process: str) -> float | None:
        """From minute 2 (warm) to the last minute, in percent."""
        samples = self.rss_mib[process]
        return round((samples[-1] / samples[1] - 1) * 100, 1) if len(samples) > 2 else None


def soak(args: argparse.Namespace, spire_server: Path, plugin: Path, mint_client: Path) -> SoakResult:
    limit = signs_per_second(args.scale)
    names = [server_name(key_manager, number) for key_manager in (PLUGIN, BUILT_IN) for number in range(args.soak_servers)]
    seconds = args.soak_minutes * 60
    with (
        tempfile.TemporaryDirectory(prefix="spire-soak-") as tmp,
        local_app(
            Path(tmp), TRUST_DOMAIN, {IDENTITY: names}, CHALLENGE_RESOURCE, vault_throttle_scale=args.scale, timer_schedules=SOAK_SCHEDULES
        ) as app,
    ):
        servers = fleets(app, spire_server, plugin, Path(tmp), args.soak_servers, ca_ttl=SOAK_CA_TTL, svid_ttl=SOAK_SVID_TTL)
        with running(servers):
            for fleet in servers.values():
                mass_start("soak", fleet, Vault(app), args.start_timeout)
            _progress(f"soak: {args.soak_minutes:g} minutes at {SOAK_LOAD:.0%} of the limit over both fleets")
            processes = {"devhost": app.devhost.process, "localvault": app.vault.process}
            rss: dict[str, list[float]] = {name: [] for name in processes}

            def sample_rss() -> None:
                for name, process in processes.items():
                    rss[name].append(_rss_mib(process.pid))

            fleet_of = [key_manager for key_manager, fleet in servers.items() for _ in fleet]
            sockets = [server.socket_path for fleet in servers.values() for server in fleet]
            minutes = [(limit * SOAK_LOAD, 60.0)] * int(args.soak_minutes) or [(limit * SOAK_LOAD, seconds)]
            calls, _ = offer(mint_client, sockets, minutes, sample_rss)
            phases = [
                summarize(
                    key_manager,
                    "soak",
                    [call for server, call in calls if fleet_of[server] == key_manager],
                    0.0,
                    sum(span for _, span in minutes),
                    limit,
                    limit * SOAK_LOAD / 2,
                    0,
                )
                for key_manager in servers
            ]
            for phase in phases:
                phase.vault_requests_per_mint = None  # the two fleets share the vault's counters
            rotations = {
                key_manager: {
                    "x509_ca_activations": sum(server.log().count("X509 CA activated") for server in fleet),
                    "jwt_key_activations": sum(server.log().count("JWT key activated") for server in fleet),
                }
                for key_manager, fleet in servers.items()
            }
    return SoakResult(args.soak_minutes, phases, rotations, rss)


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def render(starts: list[StartResult], phases: list[PhaseResult], soaked: SoakResult | None) -> str:
    lines = ["mass first start", "key manager                servers  healthy  s to last healthy  creates  creates 429  restarts"]
    for s in starts:
        lines.append(
            f"{s.key_manager:<26} {s.servers:>7}  {s.healthy:>7}  {s.seconds_to_all_healthy:>17}  {s.creates_served:>7}  "
            f"{s.creates_throttled:>11}  {s.restarts:>8}"
        )
        lines += [f"    {failure}" for failure in s.failed]
    lines += [
        "",
        "mints per second offered, the limit, served; longest: the slowest call (SPIRE's deadline is 30 s); requests: Key Vault's per",
        "served mint, 429s included; recovery: from the drop to 50% until every mint is served within 1 s",
        "key manager                load              offered  limit  served  p50 ms  p99 ms  longest s  requests  recovery s  failures",
    ]
    for p in [*phases, *(soaked.phases if soaked else [])]:
        failures = ", ".join(f"{code} {count}" for code, count in sorted(p.failures.items())) or "none"
        lines.append(
            f"{p.key_manager:<26} {p.load:<17} {p.offered_per_second:>7}  {p.limit_per_second:>5}  {p.goodput_per_second:>6}  "
            f"{_cell(p.p50_ms):>6}  {_cell(p.p99_ms):>6}  {p.longest_wait_s:>9}  {_cell(p.vault_requests_per_mint):>8}  "
            f"{_cell(p.recovery_s):>10}  {failures}"
        )
        lines += [f"    {message}" for message in p.failure_messages]
    if soaked:
        lines += ["", f"soak, {soaked.minutes:g} minutes: key rotations {json.dumps(soaked.rotations)}"]
        for process, samples in soaked.rss_mib.items():
            lines.append(f"  {process} RSS MiB each minute: {samples}; growth from minute 2: {_cell(soaked.rss_growth(process))} %")
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="localvault's --throttle-scale (default 0.1: 40 signs/s)")
    parser.add_argument("--servers", type=int, default=4, help="spire-servers per KeyManager (default 4)")
    parser.add_argument("--seconds", type=float, default=60, help="seconds of each offered load (default 60)")
    parser.add_argument("--soak-minutes", type=float, default=10, help="minutes of soak; 0 skips it (default 10)")
    parser.add_argument("--soak-servers", type=int, default=2, help="spire-servers per KeyManager in the soak (default 2)")
    parser.add_argument("--start-timeout", type=float, default=120, help="seconds a server may take to start (default 120)")
    parser.add_argument("--no-overload", action="store_true", help="skip the mass start and the offered loads")
    args = parser.parse_args(argv)
    spire_server, plugin = binaries()
    with tempfile.TemporaryDirectory(prefix="mintbench-") as tmp:
        mint_client = build_mint_client(Path(tmp))
        starts, phases = ([], []) if args.no_overload else overload(args, spire_server, plugin, mint_client)
        soaked = soak(args, spire_server, plugin, mint_client) if args.soak_minutes > 0 else None
    print(render(starts, phases, soaked))
    RESULTS.write_text(
        json.dumps(
            {
                "arguments": vars(args),
                "starts": [asdict(start) for start in starts],
                "loads": [asdict(phase) for phase in phases],
                "soak": asdict(soaked) if soaked else None,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
