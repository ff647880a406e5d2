"""Run `relay` as a user would: a real process, real port, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def wait(cond: Any, timeout: float = 15.0) -> Any:
    """Poll ``cond`` until it returns something truthy (for tests driving real processes)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "SLACK_", "CRM_"))}
    env.update(extra)
    return env


def relay(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        cwd=cwd,
        env=env or clean_env(),
        input=input.decode() if input else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Server:
    """`relay serve` in a subprocess; stdout (JSON logs) collected to a file."""

    def __init__(
        self,
        cwd: Path,
        config: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        """``wrap`` turns the command line into another (to run it in a namespace, say)."""
        self.cwd = cwd
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["serve", "--port", str(self.port), *extra]
        if config is not None:
            args += ["--config", str(config)]
        self.log_path = cwd / f"relay-{self.port}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "relay", *args]
        self.proc = subprocess.Popen(
            wrap(command) if wrap is not None else command,
            cwd=cwd,
            env=env or clean_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"relay exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"relay not ready: {self.output()}")

    def post(self, body: Any, **kw: Any) -> httpx.Response:
        if isinstance(body, bytes | str):
            return httpx.post(self.url + "/webhooks/pushwoosh", content=body, timeout=10, **kw)
        return httpx.post(self.url + "/webhooks/pushwoosh", json=body, timeout=10, **kw)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        import json

        out = []
        for line in self.output().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "<not json>", "raw": line})
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()
