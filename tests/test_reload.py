"""Hot reload of a running `relay serve`: file change and SIGHUP, valid and invalid."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from .process import Server, relay, wait
from .sink import Sink

BASE = """
server: {{dedupe_window: 0, port: {port}}}
queue: {{url: "sqlite:///{db}", poll_interval: 100ms}}
destinations:
  log: {{type: log}}
  crm: {{type: http, url: "{sink}"}}
routes:
  - {{name: all, to: [log]}}
"""


def events(server: Server, name: str) -> list[dict[str, Any]]:
    return [x for x in server.lines() if x.get("event") == name]


def test_file_change_and_sighup_reload(tmp_path: Path, bounced: dict[str, Any]) -> None:
    with Sink() as sink:
        cfg = tmp_path / "relay.yaml"
        from .process import free_port

        port = free_port()
        base = BASE.format(port=port, db=tmp_path / "q.db", sink=sink.url)
        cfg.write_text(base)
        server = Server(tmp_path, cfg, port=port)
        try:
            assert server.post(bounced).status_code == 200
            time.sleep(0.5)
            assert sink.received == []

            # 1. A valid change: the new route takes effect within 2 s, without a signal.
            changed = time.time()
            cfg.write_text(base + "  - {name: crm, to: [crm]}\n")
            wait(lambda: events(server, "config.reloaded"), timeout=2.5)
            assert time.time() - changed <= 2.5
            assert server.post(dict(bounced, user_id="2")).status_code == 200
            sink.wait_for(1)

            # 2. An invalid change is refused with `relay check`'s message; the old config stays.
            bad = base + "  - {name: crm, to: [crn]}\n"
            cfg.write_text(bad)
            failed = wait(lambda: events(server, "config.reload_failed"), timeout=2.5)
            check = relay("check", "--config", str(cfg), cwd=tmp_path)
            assert check.returncode == 1
            assert failed[0]["message"] == check.stderr.strip()
            assert "unknown destination 'crn'" in failed[0]["message"]
            assert server.post(dict(bounced, user_id="3")).status_code == 200
            sink.wait_for(2)  # the previous config (with the crm route) still runs

            # 3. SIGHUP reloads; a restart-only change is reported as such.
            cfg.write_text(base.replace(f"port: {port}", f"port: {port + 1}"))
            by_file = wait(
                lambda: [e for e in events(server, "config.reloaded") if e["trigger"] == "file"][1:]
            )
            assert by_file[-1]["restart_required"] == ["server.port"]
            os.kill(server.proc.pid, signal.SIGHUP)
            by_signal = wait(
                lambda: [e for e in events(server, "config.reloaded") if e["trigger"] == "SIGHUP"]
            )
            assert by_signal[0]["restart_required"] == ["server.port"]
            assert server.post(dict(bounced, user_id="4")).status_code == 200
            time.sleep(0.5)
            assert len(sink.received) == 2  # the crm route is gone again
        finally:
            assert server.stop() == 0
