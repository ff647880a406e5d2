"""The table the suite prints (markdown) and the JSON it writes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PASS, MISS, INFO, NA, ERROR = "pass", "miss", "", "n/a", "error"


@dataclass
class Row:
    step: str
    metric: str
    relay: float | str | None
    ceiling: float | str | None = None
    ratio: float | None = None  # relay / ceiling, shown as % or as a factor
    target: str = ""
    result: str = INFO
    ratio_style: str = "%"  # "%" or "x"
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(ok: bool) -> str:
    return PASS if ok else MISS


def _num(v: float | str | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "-"
    return f"{row.ratio:.2f}x" if row.ratio_style == "x" else f"{row.ratio * 100:.0f} %"


def table(rows: list[Row]) -> str:
    head = ["step", "metric", "relay", "ceiling", "ratio", "target", "result"]
    body = [
        [
            r.step,
            r.metric,
            _num(r.relay),
            _num(r.ceiling),
            _ratio(r),
            r.target or "-",
            r.result or "-",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    notes = [f"- {r.step} / {r.metric}: {r.note}" for r in rows if r.note]
    return "\n".join(out + (["", *notes] if notes else []))


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
