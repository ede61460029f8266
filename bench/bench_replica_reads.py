"""Do ``GET /connection`` reads scale with gateway replicas? One gateway, then two, as ``make up`` runs them.

    uv run --frozen python bench/bench_replica_reads.py [--rounds 5] [--duration 10] [--clients 64]
        [--loadgen auto|wrk|python] [--cpu-limit 0.5 | --no-cpu-limit]

For 1 and then 2 replicas it starts the whole stack through ``deploy/local/up.py --replicas N`` (the
code ``make up REPLICAS=N`` runs: the gateways share one port through SO_REUSEPORT, the embedded
MongoDB journals at commit), on free ports with a data directory and a bus namespace of its own, the
secret-key rate limit off (``KEYWAY_RATE_LIMIT_PER_MINUTE=0``). Against each it runs
``bench_get_connection.py``'s measurement of a running stack (1000 API-key connections read
round-robin from keep-alive clients in a separate process) and prints req/s and p99 for each, and
the ratio of two replicas to one. It does so ``--rounds`` times, alternating, and quotes the median
ratio: on this 2-core machine one pair alone moves by a tenth or more from run to run. The issue's
aim: a ratio of 1.5 or more, p99 <= 25 ms with one gateway at 64 clients. On a shared 2-core machine
the figures are indicative only.

Two gateways on a 2-core machine that also runs the load generator, the broker and the database
cannot double the reads: one gateway already takes about a core, and the second can only have what
is left. So each stack is also measured with every gateway capped at ``--cpu-limit`` cores (0.5 by
default) through a cgroup CFS quota, exactly what a Kubernetes ``limits.cpu: 500m`` does to a pod
(``tests/support/cpu_limit.py``): with the machine no longer the ceiling, the capped ratio shows whether a second
replica adds a replica's worth of reads or loses it to shared work, such as database reloads. It
needs root and a writable cgroup ``cpu`` controller; without them the capped half is skipped with a
note.

It also counts the gateways' ``find`` commands on ``connections`` during the load (warm-up
included; ``bench/command_counter`` on their ``PYTHONPATH``): what keeping the connection cache
coherent costs the database, a figure the machine's load does not blur. Each connection is read
once when first missed; a replica that reloaded its hot entries every few seconds shows here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

import uvloop
from bench_get_connection import (
    MAKE_UP_CHANGES,
    UP,
    Options,
    Stack,
    Target,
    _load,
    _seed,
    running_stack,
)
from common import (
    BENCH,
    amqp_url,
    check_rabbitmq,
    cpu_limit_unavailable,
    cpu_limited,
    delete_namespace,
    ensure_wrk,
    free_port_run,
    print_table,
    ratio,
    unique,
)

DEFAULT_CPU_LIMIT = 0.5  # cores per gateway in the capped measurement: a pod's "500m"
COUNTED = "find connections"  # the gateways' reads of connections (misses, reloads, change checks)


def finds(counter_dir: Path, pids: list[int]) -> int:
    total = 0
    for pid in pids:
        path = counter_dir / f"{pid}.json"
        if path.exists():
            total += int(json.loads(path.read_text()).get(COUNTED, 0))
    return total


@contextmanager
def stack_of(amqp: str, replicas: int) -> Iterator[tuple[str, str, Path]]:
    """``deploy/local/up.py --replicas N`` on free ports: the gateway's URL, the secret key and where
    the services' MongoDB command counts are written."""
    # A consumer's replica i listens on its first port + i: each needs `replicas` free ports in a row.
    ports = {name: free_port_run(replicas) for name in ("gateway", "activity", "dispatcher", "refresher", "mongo")}
    secret_key = str(uuid.uuid4())
    namespace = unique("kwbench")
    with tempfile.TemporaryDirectory(prefix="kwbench-replicas-") as tmp:
        env = {
            **os.environ,
            "AMQP_URL": amqp,
            "KEYWAY_DEV_DATA_DIR": tmp,
            "KEYWAY_DEV_MONGO_PORT": str(ports["mongo"]),
            "KEYWAY_GATEWAY_PORT": str(ports["gateway"]),
            "KEYWAY_ACTIVITY_LOG_PORT": str(ports["activity"]),
            "KEYWAY_WEBHOOK_DISPATCHER_PORT": str(ports["dispatcher"]),
            "KEYWAY_TOKEN_REFRESHER_PORT": str(ports["refresher"]),
            "KEYWAY_BUS_NAMESPACE": namespace,
            "KEYWAY_SECRET_KEY_DEV": secret_key,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH / "command_counter"), os.environ.get("PYTHONPATH")])),
            "KEYWAY_BENCH_COMMAND_DIR": str(Path(tmp) / "commands"),
            **MAKE_UP_CHANGES,
        }
        (Path(tmp) / "commands").mkdir()
        for inherited in ("MONGODB_URL", "KEYWAY_ENCRYPTION_KEY", "KEYWAY_PUBLIC_URL"):
            env.pop(inherited, None)  # make up's own: the embedded database, a key under the data directory
        log_path = Path(tmp) / "up.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, str(UP), "--replicas", str(replicas)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 180
            while "Ctrl-C stops everything" not in log_path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"deploy/local/up.py --replicas {replicas} did not start")
                time.sleep(0.3)
            yield f"http://127.0.0.1:{ports['gateway']}", secret_key, Path(tmp) / "commands"
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
            # make up's queues are quorum queues, which outlive their consumers; a broker away is not waited for.
            with suppress(Exception):
                uvloop.run(asyncio.wait_for(delete_namespace(amqp, namespace), timeout=30))


def main() -> None:
    run(arguments().parse_args())


def arguments() -> argparse.ArgumentParser:
    """The command line, whose defaults ``bench/run.py`` takes too."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=Options.duration)
    parser.add_argument("--warmup", type=float, default=Options.warmup)
    parser.add_argument("--connections", type=int, default=Options.connections)
    parser.add_argument("--clients", type=int, default=Options.concurrency, help="keep-alive clients (64)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default=Options.loadgen)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="gateway counts to run (1 2)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="times to run the gateway counts, alternated; the median pair is quoted"
    )
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument(
        "--cpu-limit",
        type=float,
        default=DEFAULT_CPU_LIMIT,
        help=f"also measure each stack with every gateway capped at this many cores ({DEFAULT_CPU_LIMIT})",
    )
    limit.add_argument("--no-cpu-limit", dest="cpu_limit", action="store_const", const=None, help="no capped run")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The rounds of ``args`` (as :func:`main` parses them), printed; the medians of the 1-and-2 pairs,
    as ``make up`` runs the gateways and, when the machine allows it, with each capped."""
    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    wrk = ensure_wrk() if args.loadgen in {"auto", "wrk"} else None
    if args.loadgen == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed and could not be installed (apt-get install -y wrk)")
    tool = "wrk" if wrk else "python"
    limits: list[float | None] = [None]
    skipped = None
    if args.cpu_limit is not None:
        skipped = cpu_limit_unavailable()
        if skipped is None:
            limits.append(args.cpu_limit)
        else:
            print(f"  no capped run: {skipped}")
    rounds: list[dict[tuple[int, float | None], dict[str, Any]]] = []
    for number in range(1, args.rounds + 1):
        figures: dict[tuple[int, float | None], dict[str, Any]] = {}
        for replicas in args.replicas:
            label = f"{replicas} gateway replica{'s' if replicas > 1 else ''}"
            print(f"== round {number}/{args.rounds}: {label} (deploy/local/up.py --replicas {replicas})")
            for limit, result in _measure(replicas, amqp, tool, wrk, args, limits).items():
                figures[(replicas, limit)] = result
        rounds.append(figures)
    print()
    print_table(
        [
            "round",
            "gateways",
            "CPU limit each",
            "req/s",
            "p50 ms",
            "p99 ms",
            "machine busy",
            "reads per gateway core-s",
            "connection finds/s",
            "upkeep finds/s",
        ],
        [
            [
                i,
                n,
                _limit_label(limit),
                f["rps"],
                f["p50_ms"],
                f["p99_ms"],
                f["machine_busy_cores"],
                round(per_gateway_core(f)),
                f["finds_per_s"],
                f["upkeep_finds_per_s"],
            ]
            for i, figures in enumerate(rounds, 1)
            for (n, limit), f in figures.items()
        ],
    )
    summary: dict[str, Any] = {
        "rounds": [{f"{n}@{_limit_label(limit)}": f for (n, limit), f in figures.items()} for figures in rounds],
        "cpu_limit": args.cpu_limit if len(limits) > 1 else None,
        "cpu_limit_skipped": skipped,
    }
    for limit in limits:
        pairs = [(f[(1, limit)], f[(2, limit)]) for f in rounds if (1, limit) in f and (2, limit) in f]
        if not pairs:
            continue
        # One pair is one sample of a ratio that moves by a tenth or more from run to run on a shared
        # 2-core machine: the median of alternated pairs is the figure to quote.
        scalings = [ratio(two["rps"], one["rps"]) for one, two in pairs]
        p99s = [one["p99_ms"] for one, _ in pairs]
        # What a replica serves per core of its own, two against one: 1.0 means a second replica adds
        # a whole replica's worth wherever it has a core to itself.
        efficiency = [ratio(per_gateway_core(two), per_gateway_core(one)) for one, two in pairs]
        if limit is None:
            print(
                f"  as make up runs them, 2 gateways / 1 gateway: {statistics.median(scalings)}"
                f" (median of {scalings}; bounded by the machine's 2 cores, which the load generator,"
                f" broker and database share); p99 with 1: {statistics.median(p99s)} ms"
                f" (median of {p99s}; aim: <= 25 ms)"
            )
            summary["p99_ms_one"] = statistics.median(p99s)  # the p99 aim is for a gateway as started
        else:
            print(
                f"  each gateway capped at {limit:g} cores, 2 gateways / 1 gateway: {statistics.median(scalings)}"
                f" (median of {scalings}; aim: >= 1.5)"
            )
        prefix = "" if limit is None else "capped_"
        summary |= {
            f"{prefix}ratio_two_over_one": statistics.median(scalings),
            f"{prefix}ratios": scalings,
            f"{prefix}per_core_two_over_one": statistics.median(efficiency),
        }
        print(
            f"  reads per gateway core-second, 2 gateways / 1 ({_limit_label(limit)}):"
            f" {statistics.median(efficiency)} (median of {efficiency})"
        )
    return summary


def _limit_label(limit: float | None) -> str:
    return "none" if limit is None else f"{limit:g} cores"


def per_gateway_core(figures: dict[str, Any]) -> float:
    """Reads per second of gateway CPU: the rate over the cores the gateway processes used."""
    cores = sum(used for name, used in figures["cpu_cores"].items() if name.startswith("gateway"))
    return figures["rps"] / cores if cores else float("nan")


def _measure(
    replicas: int, amqp: str, tool: str, wrk: str | None, args: argparse.Namespace, limits: list[float | None]
) -> dict[float | None, dict[str, Any]]:
    """One stack of ``replicas`` gateways, seeded, then loaded once per CPU limit (None: as started),
    and stopped: the figures of each load."""
    results: dict[float | None, dict[str, Any]] = {}
    with stack_of(amqp, replicas) as (url, secret_key, counter_dir):
        opts = Options(
            connections=args.connections,
            concurrency=args.clients,
            duration=args.duration,
            warmup=args.warmup,
            loadgen=args.loadgen,
            url=url,
            secret_key=secret_key,
            baselines=False,
        )
        stack = running_stack(opts)
        gateways = [pid for name, pid in stack.pids.items() if name.startswith("gateway") and pid]
        uvloop.run(_seed(stack, opts.connections))
        for limit in limits:
            if limit is not None:
                print(f"  -- each gateway capped at {limit:g} cores (a cgroup CFS quota, as a pod's CPU limit)")
            with cpu_limited(gateways, limit) if limit is not None else nullcontext():
                results[limit] = _load_counted(replicas, tool, wrk, stack, opts, counter_dir, gateways)
    return results


def _load_counted(
    replicas: int, tool: str, wrk: str | None, stack: Stack, opts: Options, counter_dir: Path, gateways: list[int]
) -> dict[str, Any]:
    """One load (warm-up and measurement) and the gateways' finds on connections during it."""
    time.sleep(1.0)  # the counters are written twice a second
    before, started = finds(counter_dir, gateways), time.perf_counter()
    result = _load(tool, wrk, Target(name="gateway", url=stack.url, pids=stack.pids), stack, opts)
    time.sleep(1.0)
    counted, elapsed = finds(counter_dir, gateways) - before, time.perf_counter() - started
    result["finds_per_s"] = round(counted / elapsed, 1)
    # Each replica misses each connection at most once per load (the first); the rest is upkeep.
    result["upkeep_finds_per_s"] = round(max(0, counted - replicas * opts.connections) / elapsed, 1)
    print(
        f"  gateways' finds on connections during the load: {result['finds_per_s']}/s, "
        f"{result['upkeep_finds_per_s']}/s beyond one miss per connection per replica",
        flush=True,
    )
    return result


if __name__ == "__main__":
    main()
