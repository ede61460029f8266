"""Benchmark (a): ``GET /connection/{id}`` through the gateway ``make up`` starts, as a user measures it.

    uv run --frozen python bench/bench_get_connection.py [--duration 10] [--clients 64] [--loadgen auto|wrk|python]
    uv run --frozen python bench/bench_get_connection.py --url http://127.0.0.1:3003 --secret-key KEY

Without ``--url`` it starts the whole stack through ``deploy/local/up.py``, the code ``make up``
runs (every service, the embedded MongoDB with its journal synced at commit, the same settings),
on free ports, a data directory of its own and a bus namespace of its own, with one change: the
secret-key rate limit is off (``KEYWAY_RATE_LIMIT_PER_MINUTE=0``), or all but 2400 reads a minute
would be 429s. With ``--url`` it measures a stack already running (start it with
``KEYWAY_RATE_LIMIT_PER_MINUTE=0 make up``).

Either way it creates an integration of its own and 1000 API-key connections through the secret-key
API, reads them round-robin from keep-alive clients in a separate process (wrk, or ``loadgen.py``),
and reports the rate, the latencies and the **CPU time per read** of each process of the stack.
Baselines from the same run: the same load on ``bare_server.py`` returning the same JSON, and (when
it started the stack) raw ``find_one`` calls on the same collection. ``--url`` deletes the
integration, hence its connections, at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import uvloop
from common import (
    BENCH,
    ROOT,
    UP_READY_LINE,
    amqp_url,
    check_rabbitmq,
    children_cpu_seconds,
    cpu_seconds,
    delete_namespace,
    ensure_wrk,
    find_pid,
    free_port,
    listening_pids,
    machine_busy,
    machine_jiffies,
    print_table,
    ratio,
    unique,
    wait_for_port,
)

from keyway_shared.logging import configure_logging

PROVIDER = "posthog"  # API_KEY; no verification call nor enrichment on import
LUA = BENCH / "get_connection.lua"
UP = ROOT / "deploy" / "local" / "up.py"
RESULTS = BENCH / "results"  # git-ignored; the stack's output stays there after the run
# What the bench changes in the environment ``make up`` runs with (besides ports and names).
MAKE_UP_CHANGES = {"KEYWAY_RATE_LIMIT_PER_MINUTE": "0"}
_PROBLEM = re.compile(r"\[(warning|error|critical)\s*\]|Traceback")


@dataclass(frozen=True, kw_only=True)
class Options:
    connections: int = 1000
    concurrency: int = 64
    duration: float = 10.0
    # Past the creation of the connections: for CHECK_OVERLAP plus one check interval after a write
    # (auth_gateway/connection_cache.py, 10 + 2.5 s), every replica's change checks read it again;
    # after 1,000 writes in a row that costs the database most of a core and drops the cache (at
    # 2 s of warm-up, the embedded MongoDB took 0.69 core and 480 reads missed). The figure is the
    # steady state a running deployment serves.
    warmup: float = 15.0
    loadgen: str = "auto"  # auto: wrk when it is (or can be) installed, else the Python load generator
    wrk_threads: int = 1
    url: str | None = None  # a running stack's gateway; None: start one through deploy/local/up.py
    secret_key: str | None = None
    baselines: bool = True


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    url: str
    pids: dict[str, int | None]  # processes whose CPU time is reported for the run


@dataclass(kw_only=True)
class Stack:
    """The gateway under test: its URL, the secret key, and the processes whose CPU is counted."""

    url: str
    secret_key: str
    config_key: str
    pids: dict[str, int | None] = field(default_factory=dict)
    mongo_url: str | None = None  # known when this bench started the stack
    database: str = "keyway"
    namespace: str | None = None  # the bus namespace to delete at the end, when the bench chose it


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextmanager
def make_up_stack(amqp: str, opts: Options) -> Iterator[Stack]:
    """``deploy/local/up.py --replicas 1`` with free ports, its own data directory and namespace."""
    ports = {name: free_port() for name in ("gateway", "activity", "dispatcher", "refresher", "mongo")}
    secret_key = str(uuid.uuid4())
    namespace = unique("kwbench")
    with tempfile.TemporaryDirectory(prefix="kwbench-up-") as tmp:
        env = {
            **os.environ,
            "AMQP_URL": amqp,
            "KEYWAY_DEV_DATA_DIR": tmp,
            "KEYWAY_DEV_MONGO_PORT": str(ports["mongo"]),
            "KEYWAY_GATEWAY_PORT": str(ports["gateway"]),
            "KEYWAY_ACTIVITY_LOG_PORT": str(ports["activity"]),
            "KEYWAY_WEBHOOK_DISPATCHER_PORT": str(ports["dispatcher"]),
            "KEYWAY_TOKEN_REFRESHER_PORT": str(ports["refresher"]),
            # Names only: a stack `make up` runs on the same broker keeps its queues.
            "KEYWAY_BUS_NAMESPACE": namespace,
            "KEYWAY_SECRET_KEY_DEV": secret_key,
            **MAKE_UP_CHANGES,
        }
        for inherited in ("MONGODB_URL", "KEYWAY_ENCRYPTION_KEY", "KEYWAY_PUBLIC_URL"):
            env.pop(inherited, None)  # make up's own: the embedded database, a key under the data directory
        if "KEYWAY_DEV_DATA_DIR" not in UP.read_text():
            raise SystemExit(f"{UP} does not read KEYWAY_DEV_DATA_DIR; it would use the checkout's .data/")
        log_path = RESULTS / "make-up-stack.log"
        log_path.parent.mkdir(exist_ok=True)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(UP), "--replicas", "1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            pids = _wait_up(proc, log_path)
            for child in _children(proc.pid):
                if "run_mongo.py" in _cmdline(child):
                    pids["mongo"] = child
            pids["rabbitmq"] = find_pid("beam.smp")
            yield Stack(
                url=f"http://127.0.0.1:{ports['gateway']}",
                secret_key=secret_key,
                config_key=unique("kwbench-"),
                pids=pids,
                mongo_url=f"mongodb://127.0.0.1:{ports['mongo']}/?retryWrites=false",
                namespace=namespace,
            )
        except BaseException:
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # up.py stops the services, then the database
                try:
                    proc.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            try:
                uvloop.run(asyncio.wait_for(delete_namespace(amqp, namespace), timeout=120))
            except (Exception, asyncio.CancelledError) as exc:  # a stuck broker: say what is left, keep the figures
                print(
                    f"  WARNING: could not delete the {namespace}.* queues and exchanges ({exc.__class__.__name__});"
                    " see bench/README.md (a) to delete them by hand",
                    flush=True,
                )
            problems = [line for line in log_path.read_text(errors="replace").splitlines() if _PROBLEM.search(line)]
            print(
                f"  the stack's output: {log_path.relative_to(ROOT)} ({len(problems)} warning or error lines);"
                f" its bus namespace {namespace} deleted"
            )
            for line in problems[:5]:
                print(f"    {line[:200]}")


def _wait_up(proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 180) -> dict[str, int | None]:
    """The pids up.py prints once every service is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "Ctrl-C stops everything" in text:
            pids: dict[str, int | None] = {}
            for package, _port, pid in UP_READY_LINE.findall(text):
                pids[package.replace("auth_gateway", "gateway")] = int(pid)
            return pids
        if proc.poll() is not None:
            raise RuntimeError(f"deploy/local/up.py exited with {proc.returncode}")
        time.sleep(0.3)
    raise RuntimeError("deploy/local/up.py did not report the stack ready in time")


def running_stack(opts: Options) -> Stack:
    """A stack the user started (``make up``): the gateway's processes found by its listening port."""
    assert opts.url is not None
    assert opts.secret_key is not None
    port = urlparse(opts.url).port or 80
    pids: dict[str, int | None] = {}
    for index, pid in enumerate(sorted(listening_pids(port))):
        pids["gateway" if index == 0 else f"gateway{index + 1}"] = pid
    pids["rabbitmq"] = find_pid("beam.smp")
    return Stack(url=opts.url.rstrip("/"), secret_key=opts.secret_key, config_key=unique("kwbench-"), pids=pids)


async def _seed(stack: Stack, connections: int) -> dict[str, Any]:
    """The integration and the connections, through the secret-key API; one real GET answer."""
    base, auth = stack.url, {"Authorization": f"Bearer {stack.secret_key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        deadline = time.monotonic() + 30
        while True:  # listening is not ready: wait until broker and database answer
            with suppress(aiohttp.ClientError):
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not become ready in 30 s")
            await asyncio.sleep(0.2)
        body = {"provider": PROVIDER, "provider_config_key": stack.config_key}
        async with session.post(f"{base}/config", json=body, headers=auth) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST /config answered {response.status}: {await response.text()}")
        limit = asyncio.Semaphore(16)

        async def connect(i: int) -> None:
            body = {
                "provider_config_key": stack.config_key,
                "connection_id": f"c{i}",
                "credentials": {"type": "API_KEY", "apiKey": f"phx_bench{i:06d}"},
                "connection_config": {"subdomain": "us"},
            }
            async with limit, session.post(f"{base}/connections", json=body, headers=auth) as response:
                if response.status >= 300:
                    raise RuntimeError(f"POST /connections answered {response.status}: {await response.text()}")

        started = time.perf_counter()
        await asyncio.gather(*(connect(i) for i in range(connections)))
        print(f"  made {connections} connections in {time.perf_counter() - started:.1f} s", flush=True)
        params = {"provider_config_key": stack.config_key}
        async with session.get(f"{base}/connection/c0", params=params, headers=auth) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /connection/c0 answered {r.status}: {await r.text()}")
            answer: dict[str, Any] = await r.json()
            limit_header = r.headers.get("X-RateLimit-Limit")
        if limit_header is not None and int(limit_header) < 10_000_000:
            raise SystemExit(
                f"the gateway limits secret-key calls to {limit_header} a minute: the reads would be 429s. "
                "Restart it with KEYWAY_RATE_LIMIT_PER_MINUTE=0 (e.g. `KEYWAY_RATE_LIMIT_PER_MINUTE=0 make up`)."
            )
        # Let the stack handle the 1000 connection.created events (webhooks, activity, refresher) first.
        await asyncio.sleep(5)
    return answer


async def _delete_integration(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.secret_key}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session,
        session.delete(f"{stack.url}/config/{stack.config_key}", headers=auth) as response,
    ):
        if response.status >= 300:
            print(f"  WARNING: DELETE /config/{stack.config_key} answered {response.status}", flush=True)


def _wrk(wrk: str, url: str, stack: Stack, opts: Options, seconds: float) -> dict[str, Any]:
    command = [
        wrk,
        f"-t{opts.wrk_threads}",
        f"-c{opts.concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        str(opts.connections),
        stack.secret_key,
        stack.config_key,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{"))
    return dict(json.loads(line))


def _python_loadgen(url: str, stack: Stack, opts: Options, seconds: float) -> dict[str, Any]:
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        url,
        str(opts.connections),
        stack.secret_key,
        stack.config_key,
        str(opts.concurrency),
        str(seconds),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


_COUNTED = re.compile(
    r'^(keyway_http_requests_total\{method="GET",route="/connection/\{connectionId\}",status="(\d+)"\}'
    r'|keyway_connection_cache_lookups_total\{outcome="(\w+)"\}|(keyway_gateway_shed_total)) ([0-9.e+]+)$'
)

_BARRIER = re.compile(r"^keyway_connection_cache_barrier_seconds_(sum|count) ([0-9.e+]+)$")
_MARKERS = re.compile(r"^keyway_connection_cache_barrier_markers_total ([0-9.e+]+)$")
_STARTED = re.compile(r"^process_start_time_seconds ([0-9.e+]+)$")  # which replica answered


def _counters(url: str) -> dict[str, float]:
    """The gateway's answers to GET /connection by status and its cache lookups by outcome (/metrics);
    empty when /metrics does not answer (a bare server, an admin port elsewhere)."""
    if not url.startswith(("http://", "https://")):
        return {}
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310 - http(s), checked
            text = response.read().decode()
    except OSError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        started = _STARTED.match(line)
        if started:
            found["process start"] = float(started.group(1))
            continue
        barrier = _BARRIER.match(line)
        if barrier:  # the histogram's sum and count: the mean wait over a run is their deltas' ratio
            found[f"barrier wait {barrier.group(1)}"] = float(barrier.group(2))
            continue
        markers = _MARKERS.match(line)
        if markers:
            found["barrier markers"] = float(markers.group(1))
            continue
        match = _COUNTED.match(line)
        if match:
            if match.group(2):
                name = f"status {match.group(2)}"
            elif match.group(3):
                name = f"cache {match.group(3)}"
            else:
                name = "shed (503, every database slot taken)"
            found[name] = found.get(name, 0.0) + float(match.group(5))
    return found


def _same_replica_counters(url: str, before: dict[str, float], *, tries: int = 40) -> dict[str, float]:
    """The counters of the replica that answered ``before``. Replicas sharing a port (SO_REUSEPORT)
    answer /metrics in turn, and one replica's counters less another's mean nothing: ask again until
    the same process answers (told by its start time), else count nothing."""
    for _ in range(tries):
        counters = _counters(url)
        if counters.get("process start") == before.get("process start"):
            return counters
    return {}


def _load(tool: str, wrk: str | None, target: Target, stack: Stack, opts: Options) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured run; CPU time of each process over the latter."""

    def once(seconds: float) -> dict[str, Any]:
        if tool == "wrk":
            assert wrk is not None
            return _wrk(wrk, target.url, stack, opts, seconds)
        return _python_loadgen(target.url, stack, opts, seconds)

    once(opts.warmup)
    counters_before = _counters(target.url)
    before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    loadgen_before = children_cpu_seconds()
    machine = machine_jiffies()
    wall = time.perf_counter()
    result = once(opts.duration)
    wall = time.perf_counter() - wall
    counters = _same_replica_counters(target.url, counters_before)
    if counters:  # what the gateway says it answered, and how its connection cache served the reads
        counters.pop("process start", None)
        deltas = {name: value - counters_before.get(name, 0.0) for name, value in sorted(counters.items())}
        waited, waits = deltas.pop("barrier wait sum", 0.0), deltas.pop("barrier wait count", 0.0)
        markers = deltas.pop("barrier markers", 0.0)
        result["gateway_counts"] = {name: round(value) for name, value in deltas.items()}
        if waits:  # what a cached read paid for coherence (broker round trips), on average
            result["barrier_wait_ms_mean"] = round(1000 * waited / waits, 2)
        if markers:  # how many cached reads shared one marker's round trip through the broker
            result["reads_per_barrier_marker"] = round(waits / markers, 1)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in target.pids.items() if pid}
    used["loadgen"] = children_cpu_seconds() - loadgen_before
    ok = result["requests"] - result["non_2xx"] - result["errors"]
    result["rps"] = round(ok / result["duration_s"], 1)  # successful answers only: a 429 is not a read
    if ok < result["requests"]:
        print(
            f"  WARNING: {target.name}: {result['requests'] - ok} of {result['requests']} requests failed", flush=True
        )
    result["cpu_cores"] = {name: round(value / wall, 2) for name, value in used.items()}
    # Every process on the machine, ours or not: near os.cpu_count(), the rate is the machine's limit.
    result["machine_busy_cores"] = machine_busy(machine)
    # CPU per successful read, in microseconds: what each process spends on one answer.
    result["cpu_us_per_read"] = {name: round(value / ok * 1e6) if ok else None for name, value in used.items()}
    print(
        f"  {target.name:<8} {result['rps']:>9,.0f} req/s  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
        f"  non-2xx {result['non_2xx']}  errors {result['errors']}",
        flush=True,
    )
    if "gateway_counts" in result:
        replicas = sum(1 for name in target.pids if name.startswith("gateway"))
        whose = "gateway counted" if replicas < 2 else f"one of {replicas} gateways counted"
        print(f"           {whose} {result['gateway_counts']}", flush=True)
    if "barrier_wait_ms_mean" in result:
        shared = result.get("reads_per_barrier_marker")
        print(
            f"           a cached read waited {result['barrier_wait_ms_mean']} ms for its barrier (mean)"
            + (f", {shared} reads per marker" if shared else ""),
            flush=True,
        )
    print(
        f"           CPU cores {result['cpu_cores']}, machine busy {result['machine_busy_cores']} of {os.cpu_count()}",
        flush=True,
    )
    print(f"           CPU µs per read {result['cpu_us_per_read']}", flush=True)
    return result


def _find_one(mongo_url: str, stack: Stack, opts: Options, mongo_pid: int | None) -> dict[str, Any]:
    def once(seconds: float) -> dict[str, Any]:
        command = [
            sys.executable,
            str(BENCH / "find_one_load.py"),
            mongo_url,
            stack.database,
            str(opts.connections),
            stack.config_key,
            str(opts.concurrency),
            str(seconds),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    once(opts.warmup)
    mongo_before, client_before = cpu_seconds(mongo_pid), children_cpu_seconds()
    wall = time.perf_counter()
    result = once(opts.duration)
    wall = time.perf_counter() - wall
    result["ops"] = round(result["operations"] / result["duration_s"], 1)
    result["cpu_cores"] = {"client": round((children_cpu_seconds() - client_before) / wall, 2)}
    if mongo_pid:
        result["cpu_cores"]["mongo"] = round((cpu_seconds(mongo_pid) - mongo_before) / wall, 2)
    print(
        f"  find_one {result['ops']:>9,.0f} ops/s    p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
        f"  misses {result['misses']}  CPU cores {result['cpu_cores']}",
        flush=True,
    )
    return result


def _measure(stack: Stack, opts: Options) -> dict[str, Any]:
    wrk = ensure_wrk() if opts.loadgen in {"auto", "wrk"} else None
    if opts.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed (apt-get install -y wrk)")
    tool = "wrk" if wrk else "python"
    tool_label = f"wrk -t{opts.wrk_threads} -c{opts.concurrency}" if wrk else f"bench/loadgen.py c={opts.concurrency}"
    print(f"  load generator: {tool_label} (a separate process)", flush=True)
    results: dict[str, Any] = {
        "stack": "running (--url)" if opts.url else "deploy/local/up.py --replicas 1",
        "settings_changed_from_make_up": {} if opts.url else MAKE_UP_CHANGES,
        "tool": tool_label,
        "connections": opts.connections,
        "concurrency": opts.concurrency,
    }
    body = uvloop.run(_seed(stack, opts.connections))
    try:
        target = Target(name="gateway", url=stack.url, pids=stack.pids)
        results["gateway"] = _load(tool, wrk, target, stack, opts)
        if opts.baselines and stack.mongo_url:
            results["find_one"] = _find_one(stack.mongo_url, stack, opts, stack.pids.get("mongo"))
    finally:
        if opts.url:
            uvloop.run(_delete_integration(stack))
    if not opts.baselines:
        return results
    with tempfile.TemporaryDirectory(prefix="kwbench-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(body))
        results["body_bytes"] = len(json.dumps(body, separators=(",", ":")))
        bare_port = free_port()
        bare = subprocess.Popen(
            [sys.executable, str(BENCH / "bare_server.py"), str(bare_port), str(body_file)],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(bare_port, proc=bare)
            target = Target(name="bare", url=f"http://127.0.0.1:{bare_port}", pids={"bare": bare.pid})
            results["bare"] = _load(tool, wrk, target, stack, opts)
        finally:
            bare.terminate()
            bare.wait(timeout=10)
    return results


def run(amqp: str, opts: Options) -> dict[str, Any]:
    where = opts.url or "a stack started by deploy/local/up.py (make up's code)"
    print(
        f"(a) GET /connection/{{id}} on {where}: {opts.concurrency} clients, "
        f"{opts.duration:g} s after {opts.warmup:g} s warm-up"
    )
    if opts.url:
        results = _measure(running_stack(opts), opts)
    else:
        with make_up_stack(amqp, opts) as stack:
            results = _measure(stack, opts)

    gateway = results["gateway"]
    rows: list[list[Any]] = [
        ["gateway (make up)", gateway["rps"], gateway["p50_ms"], gateway["p99_ms"], ""],
    ]
    if "bare" in results:
        results["ratio_gateway_over_bare"] = ratio(gateway["rps"], results["bare"]["rps"])
        bare = results["bare"]
        rows.append(
            ["bare aiohttp, same JSON", bare["rps"], bare["p50_ms"], bare["p99_ms"], results["ratio_gateway_over_bare"]]
        )
    if "find_one" in results:
        results["ratio_gateway_over_find_one"] = ratio(gateway["rps"], results["find_one"]["ops"])
        one = results["find_one"]
        rows.append(
            ["raw find_one (ops/s)", one["ops"], one["p50_ms"], one["p99_ms"], results["ratio_gateway_over_find_one"]]
        )
    print()
    print_table(["(a) GET /connection", "rate/s", "p50 ms", "p99 ms", "gateway / this"], rows)
    per_read = gateway["cpu_us_per_read"]
    print(f"  gateway CPU per read: {per_read.get('gateway')} µs; every process: {per_read}")
    print()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=Options.duration)
    parser.add_argument("--warmup", type=float, default=Options.warmup)
    parser.add_argument("--connections", type=int, default=Options.connections)
    parser.add_argument("--clients", type=int, default=Options.concurrency, help="keep-alive clients (64)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default=Options.loadgen)
    parser.add_argument("--url", default=None, help="a running stack's gateway, e.g. http://127.0.0.1:3003")
    parser.add_argument("--secret-key", default=None, help="with --url: the environment's secret key")
    parser.add_argument("--no-baselines", action="store_true", help="the gateway only: no bare server, no find_one")
    args = parser.parse_args()
    if args.url and not args.secret_key:
        parser.error("--url needs --secret-key (make up prints the dev secret key)")
    configure_logging(level="WARNING", json=False, service="bench")
    opts = Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        concurrency=args.clients,
        loadgen=args.loadgen,
        url=args.url,
        secret_key=args.secret_key,
        baselines=not args.no_baselines,
    )
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    print(json.dumps(run(amqp, opts), indent=2))


if __name__ == "__main__":
    main()
