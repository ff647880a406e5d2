"""Subprocesses the suite starts (sink, bare app, `relay serve`): start, wait, measure, stop.

Every server gets its own log file in the run's temp dir (a full pipe would
stall it); on a failed start the tail of that log is in the error.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """Something the suite needs did not work (a server did not start, ...)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_env() -> dict[str, str]:
    """The environment for Python children: the repo importable, no stray bytecode prints."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("RELAY_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    """One started child process, listening on ``port`` of 127.0.0.1."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        logdir: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = logdir / f"{name}-{port}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or REPO,
            env={**python_env(), **(env or {})},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        return ""

    def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        """Until ``GET path`` answers (any status below 500), or fail with the log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", path)
                if conn.getresponse().status < 500:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        self.stop()
        raise BenchError(
            f"{self.name} not ready on port {self.port} after {timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL to its own process group after ``grace`` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # the group this child leads
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def rss_mb(self) -> tuple[float, float]:
        """(RSS of the process and all its children, peak RSS of the main process), in MiB."""
        return rss_tree_mb(self.pid)


def rss_tree_mb(pid: int) -> tuple[float, float]:
    try:
        import psutil
    except ImportError:
        pids = [pid, *_children_proc(pid)]
        total = sum(_status_kb(p, "VmRSS") for p in pids)
        return total / 1024, _status_kb(pid, "VmHWM") / 1024
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
    except psutil.Error:
        return 0.0, 0.0
    return total / 2**20, _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children_proc(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids = [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except (OSError, ValueError):
        return out
    for kid in kids:
        out += [kid, *_children_proc(kid)]
    return out


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
