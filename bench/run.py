"""``make bench``: run every benchmark once, print a summary table, write ``bench/results/latest.json``.

    uv run --frozen python bench/run.py [--only connection|events|refresh|webhooks|activity|imports|replicas|rss]
        [--duration 10] [--loadgen auto|wrk|python] [--rounds 5] [--import-seconds 15]

Needs RabbitMQ at ``AMQP_URL`` (default guest@127.0.0.1:5672). Starts the embedded MongoDB-wire
server on a temporary directory unless ``MONGODB_URL`` is set, and stops it at the end. Every
figure comes with a baseline measured in this same run, on this same machine: compare ratios
between runs, not raw rates (other work on the machine moves both sides). The run ends with issue
19's goals, each figure beside its aim: imports and API-key connects (``bench_imports.py``), one and
two gateways, as started and capped as pods (``bench_replica_reads.py``), the dispatcher's own CPU
(``bench_webhooks.py``) and idle memory (``idle_rss.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import bench_activity
import bench_event_roundtrip
import bench_get_connection
import bench_imports
import bench_refresh
import bench_replica_reads
import bench_webhooks
import idle_rss
import uvloop
from common import BENCH, amqp_url, check_rabbitmq, machine_info, mongo_server, print_table

from keyway_shared.logging import configure_logging


def _versions() -> dict[str, str]:
    found = {name: version(name) for name in ("aiohttp", "aio-pika", "pymongo", "uvloop", "secantusdb")}
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False, timeout=5)
        found["wrk"] = (wrk.stdout or wrk.stderr).split(" [")[0].replace("wrk ", "")
    except OSError:
        pass
    return found


def _summary(results: dict[str, Any]) -> None:
    rows: list[list[Any]] = []
    conn = results.get("get_connection")
    if conn:
        for key, label, unit, rate, ratio_key, of in (
            ("gateway", "(a) GET /connection, make up's gateway", "req/s", "rps", None, ""),
            ("bare", "(a) same JSON, bare aiohttp", "req/s", "rps", "ratio_gateway_over_bare", "gateway / bare"),
            ("find_one", "(a) raw find_one, 64 tasks", "ops/s", "ops", "ratio_gateway_over_find_one", "gateway / this"),
        ):
            row = conn.get(key)
            if row is None:
                continue
            rows.append(
                [label, unit, row[rate], row["p50_ms"], row["p99_ms"], conn[ratio_key] if ratio_key else "", of]
            )
    events = results.get("event_roundtrip")
    if events:
        for queue_type in events["queue_types"]:
            figures = events[queue_type]
            for key, label, ratio_key in (
                ("raw", "raw aio-pika", None),
                ("keyway", "keyway bus", "ratio_keyway_over_raw"),
                ("keyway_guarded", "keyway bus + guard", "ratio_guarded_over_raw"),
            ):
                row = figures[key]
                rows.append(
                    [
                        f"(b) {label}, {queue_type}",
                        "events/s",
                        row["rate"],
                        row["p50_ms"],
                        row["p99_ms"],
                        figures[ratio_key] if ratio_key else "",
                        "this / raw" if ratio_key else "",
                    ]
                )
    activity = results.get("activity")
    if activity:
        rows.append(
            [
                "(c) activity ingest via the bus",
                "entries/s",
                activity["keyway"]["rate"],
                "",
                "",
                activity["ratio_keyway_over_raw"],
                "this / raw insert_many",
            ]
        )
        first = activity["queries"]["all_first_pages"]
        rows.append(["(c) GET /logs/operations, first page", "query", "", first["p50_ms"], first["p99_ms"], "", ""])
    print("Summary")
    print_table(["benchmark", "unit", "rate", "p50 ms", "p99 ms", "ratio", "of"], rows)
    goals = _goals(results)
    if goals:
        print("\nIssue 19's goals (bench/README.md says what bounds each on a 2-core machine)")
        print_table(["goal", "aim", "measured", "met"], goals)


def _goals(results: dict[str, Any]) -> list[list[Any]]:
    """Each goal this run measured: its aim, the figure, and whether the figure meets it."""
    rows: list[list[Any]] = []

    def goal(name: str, aim: str, measured: str, met: bool | str | None) -> None:
        verdict = met if isinstance(met, str) else "n/a" if met is None else "yes" if met else "no"
        rows.append([name, aim, measured, verdict])

    for route, figures in results.get("imports", {}).items():
        rate, p99 = figures["writes_per_s"], figures["p99_ms"]
        goal(
            f"{route} writes, 64 clients",
            ">= 160/s, p99 < 1 s",
            f"{rate}/s, p99 {p99:.0f} ms",
            rate >= 160 and p99 < 1000,
        )
    conn = results.get("get_connection", {}).get("gateway")
    if conn:
        goal("GET /connection, 1 gateway (a)", "p99 <= 25 ms", f"p99 {conn['p99_ms']:.1f} ms", conn["p99_ms"] <= 25)
    replicas = results.get("replicas", {})
    if "ratio_two_over_one" in replicas:
        p99, scaling = replicas["p99_ms_one"], replicas["ratio_two_over_one"]
        goal("GET /connection, 1 gateway (median)", "p99 <= 25 ms", f"p99 {p99:.1f} ms", p99 <= 25)
        capped = replicas.get("capped_ratio_two_over_one")
        if capped is not None:
            # The machine's 2 cores bound the uncapped ratio (bench_replica_reads.py's docstring): the
            # capped one, each gateway a "500m" pod, is the test of whether replicas add reads.
            goal(
                f"2 gateways / 1, each capped at {replicas['cpu_limit']:g} cores (median)",
                ">= 1.5",
                f"{capped} (per gateway core: {replicas['capped_per_core_two_over_one']})",
                capped >= 1.5,
            )
        goal(
            "2 gateways / 1 as make up runs them (median)",
            ">= 1.5" if capped is None else "(machine-bound)",
            f"{scaling} (per gateway core: {replicas['per_core_two_over_one']})",
            scaling >= 1.5 if capped is None else None,
        )
    webhooks = results.get("webhooks", {})
    flat_out, paced = webhooks.get("dispatcher_1", {}), webhooks.get("dispatcher_1_paced", {})
    if "raw_same_rate_cpu_ms_per_delivery" in flat_out:
        own, bare = flat_out["sender_cpu_ms_per_delivery"], flat_out["raw_same_rate_cpu_ms_per_delivery"]
        rate = f"{flat_out['rate']:,.0f}/s"
        # The 0.25 ms came from a bare POST's cost at 5-8k/s. At the rate the dispatcher
        # delivers, a bare aiohttp POST alone costs more than that (bench/README.md), so the
        # dispatcher is judged on the like-for-like ratio, with the issue's own margin (0.25 ms
        # over the 0.12 ms it measured for a bare POST: about 2).
        rounds = flat_out.get("rounds_sender_cpu_ms_per_delivery", [own])
        goal(
            "dispatcher's own CPU per webhook (median run)",
            "<= 0.25 ms",
            f"{own} ms at {rate} (runs: {', '.join(map(str, rounds))}); a bare aiohttp POST at {rate}: {bare} ms",
            True if own <= 0.25 else "no: a bare POST costs more" if bare > 0.25 else False,
        )
        same = flat_out["sender_cpu_over_raw_same_rate"]
        goal("dispatcher / bare POST at the same rate", "<= 2", f"{same} (flat out, {rate})", same <= 2)
    if "sender_cpu_over_raw_same_rate" in paced:
        rate = f"{paced['rate']:,.0f}/s"
        # Shown, not judged: at a low rate every round trip (consume, claim, POST, record) pays its
        # own wakeup, and the bare POST makes one where the dispatcher's guarantees need four.
        goal(
            "dispatcher / bare POST, at half that rate",
            "(shown)",
            f"{paced['sender_cpu_over_raw_same_rate']} ({rate})",
            None,
        )
    rss = results.get("idle_rss", {})
    if rss.get("rss_mb"):
        services = {name: mb for name, mb in rss["rss_mb"].items() if name != "secantusdb"}
        goal("idle RSS per service", "<= 80 MB", f"largest {max(services.values())} MB", not rss["over"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        choices=["connection", "events", "refresh", "webhooks", "activity", "imports", "replicas", "rss"],
        default=None,
    )
    parser.add_argument("--duration", type=float, default=bench_get_connection.Options.duration)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default=bench_get_connection.Options.loadgen)
    parser.add_argument("--events", type=int, default=bench_event_roundtrip.Budget.events)
    parser.add_argument("--seconds", type=float, default=bench_event_roundtrip.Budget.seconds)
    parser.add_argument("--queue-types", default="classic,quorum")
    parser.add_argument("--activity-entries", type=int, default=bench_activity.Options.entries)
    parser.add_argument("--rounds", type=int, default=5, help="alternated 1- and 2-gateway pairs (replicas)")
    parser.add_argument("--import-seconds", type=float, default=15.0, help="measured seconds of each write run")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=False, service="bench")

    amqp = amqp_url()
    uvloop.run(check_rabbitmq(amqp))
    started = time.perf_counter()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    with mongo_server() as mongo:
        results["mongodb"] = "embedded SecantusDB (one Python process)" if mongo.embedded else "MONGODB_URL"
        if args.only in {None, "connection"}:
            opts = bench_get_connection.Options(duration=args.duration, loadgen=args.loadgen)
            results["get_connection"] = bench_get_connection.run(amqp, opts)  # its own stack, as make up
        if args.only in {None, "events"}:
            event_opts = bench_event_roundtrip.Options(
                budget=bench_event_roundtrip.Budget(events=args.events, seconds=args.seconds),
                queue_types=tuple(args.queue_types.split(",")),
            )
            results["event_roundtrip"] = bench_event_roundtrip.run(amqp, mongo.url, mongo.pid, event_opts)
        if args.only in {None, "refresh"}:
            results["refresh"] = bench_refresh.run(mongo.url, mongo.pid, amqp, bench_refresh.Options())
        if args.only in {None, "webhooks"}:
            with mongo_server(ttl_sweep_seconds=bench_webhooks.TTL_SWEEP_SECONDS) as wm:  # a rare TTL sweep
                results["webhooks"] = bench_webhooks.run(amqp, wm.url, wm.pid, bench_webhooks.Options())
        if args.only in {None, "activity"}:
            activity_opts = bench_activity.Options(entries=args.activity_entries)
            with mongo_server(ttl_sweep_seconds=bench_activity.TTL_SWEEP_SECONDS) as am:
                results["activity"] = bench_activity.run(amqp, am.url, am.pid, activity_opts)
    # These start their own stacks (and databases), as make up does.
    if args.only in {None, "imports"}:
        results["imports"] = {
            route: asyncio.run(bench_imports.measure(route=route, seconds=args.import_seconds))
            for route in ("import", "api-key")
        }
    if args.only in {None, "replicas"}:
        replica_args = bench_replica_reads.arguments().parse_args(
            ["--duration", str(args.duration), "--loadgen", args.loadgen, "--rounds", str(args.rounds)]
        )
        results["replicas"] = bench_replica_reads.run(replica_args)
    if args.only in {None, "rss"}:
        results["idle_rss"] = idle_rss.measure()
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["versions"] = _versions()
    results["wall_seconds"] = round(time.perf_counter() - started, 1)

    _summary(results)
    out = BENCH / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\nload average before/after: {results['load_average_before']} / {results['load_average_after']}"
        f" on {results['machine']['cpus']} CPUs; {results['wall_seconds']} s in all;"
        f" wrote {out.relative_to(BENCH.parent)}"
    )


if __name__ == "__main__":
    main()
