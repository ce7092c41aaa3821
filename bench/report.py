"""Results: a JSON file under bench/results/ and a short human table."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# (key, label, unit) rows of the human table, in order; missing keys are skipped.
TABLE_ROWS = [
    ("delivered_per_s", "delivered (other devices)", "/s"),
    ("sent_per_s", "sends acknowledged", "/s"),
    ("bare_relay_per_s", "bare relay, same run", "/s"),
    ("ratio_to_bare_relay", "ratio to bare relay", ""),
    ("delivered_per_gateway_cpu_s", "deliveries per gateway CPU-second", ""),
    ("cpu_ratio_to_bare_relay", "same, ratio to bare per CPU-second", ""),
    ("latency_rate_sends_per_s", "latency phase offered load", "sends/s"),
    ("p50_ms", "send -> delivery p50", "ms"),
    ("p95_ms", "send -> delivery p95", "ms"),
    ("p99_ms", "send -> delivery p99", "ms"),
    ("max_ms", "send -> delivery max", "ms"),
    ("sent_p99_ms", "send -> sent p99", "ms"),
    ("knee_sent_per_s", "knee: sends/s with p99 in bound", "/s"),
    ("knee_delivered_per_s", "knee: deliveries/s", "/s"),
    ("group_deliveries_per_s", "group deliveries", "/s"),
    ("bare_room_fanout_per_s", "bare x10 room fan-out", "/s"),
    ("ratio_to_bare_room_fanout", "ratio to bare room fan-out", ""),
    ("cpu_ratio_to_bare_room_fanout", "same, per CPU-second", ""),
    ("connections", "connections", ""),
    ("gateway_rss_per_conn_kb", "gateway RSS per connection", "KB"),
    ("open_file_limit", "generator open-file limit", ""),
    ("lost", "lost (checker)", ""),
    ("duplicates", "duplicates (checker)", ""),
    ("errors", "errors", ""),
    ("store_lag", "store lag at the end", "messages"),
    ("seconds_total", "wall time", "s"),
]


def machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "loadavg_1m_at_start": round(load1, 2),
        "loadavg_5m_at_start": round(load5, 2),
    }


def save(result: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = directory / f"{result['mode']}-{stamp}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def table(result: dict[str, Any]) -> str:
    lines = [f"mode {result['mode']}"]
    for key, label, unit in TABLE_ROWS:
        if key in result and result[key] is not None:
            value = result[key]
            text = f"{value:,}" if isinstance(value, int | float) else str(value)
            lines.append(f"  {label:<34} {text:>14} {unit}")
    for name, figures in (result.get("redis_topologies") or {}).items():
        if name != "single":
            lines.append(
                f"  redis {name:<28} {figures['delivered_per_s_ratio_to_single']!s:>14} "
                f"x single deliveries/s, p99 {figures['p99_ms']} ms"
            )
    targets = result.get("targets") or {}
    for name, verdict in targets.items():
        lines.append(f"  target {name:<27} {'met' if verdict else 'NOT met':>14}")
    return "\n".join(lines)


def progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
