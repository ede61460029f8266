"""Which of Keyway's own counters moved between two moments: ``/metrics`` of every replica read twice,
summed per service, and the difference kept where it is not zero (what an operator's dashboard would
show during a fault)."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["CounterSnapshot", "counter_deltas", "scrape_counters"]

# (service, sample name with its labels) -> value, summed over the service's replicas
CounterSnapshot = dict[tuple[str, str], float]


async def scrape_counters(http: aiohttp.ClientSession, targets: dict[str, tuple[str, int]]) -> CounterSnapshot:
    """``targets``: replica name -> (service, port). Counters only (``keyway_*_total``); a replica that
    does not answer is left out."""
    snapshot: CounterSnapshot = {}
    for service, port in targets.values():
        try:
            async with http.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not (sample.name.startswith("keyway_") and sample.name.endswith("_total")):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                key = (service, f"{sample.name}{{{labels}}}" if labels else sample.name)
                snapshot[key] = snapshot.get(key, 0.0) + sample.value
    return snapshot


def counter_deltas(before: CounterSnapshot, after: CounterSnapshot) -> dict[tuple[str, str], float]:
    """What grew (or appeared) from ``before`` to ``after``."""
    return {
        key: value - before.get(key, 0.0) for key, value in sorted(after.items()) if value - before.get(key, 0.0) > 0
    }
