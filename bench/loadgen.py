"""Load generators behind one interface: wrk when installed, else `bench.pyload`.

Both run as a separate process, so the orchestrator can watch the sink while
load is applied and so the generator's CPU is never the relay's. wrk reports
through a Lua ``done()`` hook that prints one JSON line; paced runs (a fixed
arrival rate, for the end-to-end step) use a wrk2-like ``delay()`` hook that
keeps an absolute schedule with a monotonic clock read through LuaJIT's FFI.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .procs import BenchError, python, python_env

WRK_INSTALL_HINT = "apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)"

_LUA_COMMON = r"""
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function setup_post(args)
  wrk.method = "POST"
  wrk.body = read(args[1])
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

_LUA_POST = (
    _LUA_COMMON
    + r"""
function init(args)
  setup_post(args)
end
"""
)

_LUA_PACED = (
    _LUA_COMMON
    + r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval = nil
local next_at = nil

function init(args)
  setup_post(args)
  interval = 1000 / tonumber(args[2])  -- this thread's share of the rate
end

-- Called before every request: take the next slot of an absolute schedule.
-- Behind schedule = send now (open loop), so the arrival rate stays the target.
function delay()
  local now = now_ms()
  if next_at == nil then next_at = now end
  next_at = next_at + interval
  local d = next_at - now
  if d < 0 then return 0 end
  return d
end
"""
)


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int  # answers received (any status)
    ok: int  # 2xx answers
    errors: int  # non-2xx answers, socket errors and timeouts
    duration_s: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "rps": round(self.rps, 1)}


class Load:
    """A load generator process in flight."""

    def __init__(self, tool: str, proc: subprocess.Popen[str]) -> None:
        self.tool = tool
        self.proc = proc

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> LoadResult:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise BenchError(f"{self.tool} did not finish within {timeout:.0f}s") from None
        if self.proc.returncode != 0:
            raise BenchError(
                f"{self.tool} failed ({self.proc.returncode}): {(err or out).strip()[-800:]}"
            )
        return self._parse(out, err)

    def _parse(self, out: str, err: str) -> LoadResult:
        if self.tool == "wrk":
            line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
            if line is None:
                raise BenchError(f"wrk printed no result: {out.strip()[-800:]} {err[-400:]}")
            d = json.loads(line.removeprefix("BENCH_JSON "))
            errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
            return LoadResult(
                "wrk",
                d["requests"],
                d["requests"] - d["status"],
                errors,
                d["duration_us"] / 1e6,
                d["p50_us"] / 1000,
                d["p99_us"] / 1000,
            )
        d = json.loads(out.strip().splitlines()[-1])
        return LoadResult(
            d["tool"],
            d["requests"],
            d["ok"],
            d["errors"],
            d["duration_s"],
            d["p50_ms"],
            d["p99_ms"],
        )


class LoadGenerator:
    """Starts POST load against a URL with a fixed body."""

    def __init__(self, kind: str, workdir: Path, body_path: Path, wrk_threads: int = 1) -> None:
        self.body_path = body_path
        self.workdir = workdir
        self.wrk_threads = wrk_threads
        self.wrk = shutil.which("wrk") if kind in ("auto", "wrk") else None
        if kind == "wrk" and self.wrk is None:
            raise BenchError(f"wrk is not installed: {WRK_INSTALL_HINT}")
        if self.wrk:
            (workdir / "post.lua").write_text(_LUA_POST)
            (workdir / "paced.lua").write_text(_LUA_PACED)
            self.name = "wrk"
        else:
            from .pyload import client_name

            self.name = f"python-{client_name()}"

    def describe(self) -> str:
        if self.wrk:
            return f"wrk ({self.wrk_threads} thread{'s' * (self.wrk_threads > 1)})"
        return f"{self.name} (Python load generator; wrk not found: {WRK_INSTALL_HINT})"

    def start(self, url: str, connections: int, duration: float, rate: float | None = None) -> Load:
        if self.wrk:
            seconds = max(1, math.ceil(duration))
            threads = min(self.wrk_threads, connections)
            argv = [
                self.wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(self.workdir / ("paced.lua" if rate else "post.lua")),
                url,
                "--",
                str(self.body_path),
            ]
            if rate:
                argv.append(repr(rate / threads))
            tool = "wrk"
        else:
            argv = python(
                "-m",
                "bench.pyload",
                "--url",
                url,
                "--body",
                str(self.body_path),
                "--connections",
                str(connections),
                "--duration",
                str(duration),
            )
            if rate:
                argv += ["--rate", repr(rate)]
            tool = self.name
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env()
        )
        return Load(tool, proc)

    def run(
        self, url: str, connections: int, duration: float, rate: float | None = None
    ) -> LoadResult:
        return self.start(url, connections, duration, rate).wait(timeout=duration + 60)


def run_count(
    url: str, body_path: Path, count: int, concurrency: int, timeout: float
) -> LoadResult:
    """Exactly ``count`` POSTs with plain aiohttp: the client ceiling the drain is held to."""
    argv = python(
        "-m",
        "bench.pyload",
        "--url",
        url,
        "--body",
        str(body_path),
        "--connections",
        str(concurrency),
        "--count",
        str(count),
        "--client",
        "aiohttp",
    )
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env()
    )
    return Load("python-aiohttp", proc).wait(timeout)
