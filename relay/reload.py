"""Hot reload: on SIGHUP, and when the config file changes (checked every second).

A valid new config takes effect for new events at once (routes, destinations,
limits, templates, token); an invalid one is refused with the very lines
`relay check` prints, and the running config stays. So is a valid one that
would silently weaken the running relay (drop its token, its admin token or its
allowed addresses, or leave no route) unless the file says so under `reload:`: a lost
line or a save caught half-way must not open the relay to anyone. Settings bound
at start (listen address, path, body limit, queue URL) are reported as needing a
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from .config import RelayConfig, parse_config, read_config
from .errors import ConfigError, Problem
from .logs import REDACTOR, get_logger

log = get_logger("relay.reload")
RESTART_ONLY = (
    ("server", "host"),
    ("server", "port"),
    ("server", "path"),
    ("server", "max_body_bytes"),
    ("server", "header_timeout"),  # these four shape uvicorn's protocol when it starts
    ("server", "body_timeout"),
    ("server", "keepalive_timeout"),
    ("server", "max_connections"),
    ("server", "console_path"),  # the console's routes are mounted at start
    ("queue", "url"),
)


def restart_required(old: RelayConfig, new: RelayConfig) -> list[str]:
    """Changed settings that only a restart applies."""
    changed = []
    for section, key in RESTART_ONLY:
        if getattr(getattr(old.settings, section), key) != getattr(
            getattr(new.settings, section), key
        ):
            changed.append(f"{section}.{key}")
    return changed


def weakenings(running: RelayConfig, new: RelayConfig) -> list[Problem]:
    """What ``new`` would silently drop from ``running``, unless its ``reload:`` section allows it.

    Changing the token or narrowing ``allow_ips`` is not dropping them; emptying them is.
    """
    allow = new.settings.reload
    server = new.settings.server
    found = []
    if running.settings.server.token and not server.token and not allow.allow_removing_token:
        found.append(
            new.problem(
                "server.token",
                "the running relay requires a token and this config has none; refused, so"
                " events stay authenticated (to drop the token, set"
                " reload.allow_removing_token: true)",
            )
        )
    running_admin = running.settings.server.admin_token
    if running_admin and not server.admin_token and not allow.allow_removing_token:
        found.append(
            new.problem(
                "server.admin_token",
                "the running relay requires an admin token for the console and admin API and"
                " this config has none; refused, so a proxied request cannot pass for a local"
                " one (to drop it, set reload.allow_removing_token: true)",
            )
        )
    dropped_ips = running.settings.server.allow_ips and not server.allow_ips
    if dropped_ips and not allow.allow_removing_allow_ips:
        found.append(
            new.problem(
                "server.allow_ips",
                "the running relay accepts events from listed addresses only and this"
                " config lets in any; refused (to drop the list, set"
                " reload.allow_removing_allow_ips: true)",
            )
        )
    if not new.table.routes and not allow.allow_no_routes:
        found.append(
            new.problem(
                "routes",
                "this config has no route, so every event would be accepted and delivered"
                " nowhere; refused (to run without routes, set reload.allow_no_routes: true)",
            )
        )
    return found


class Reloader:
    """Loads the file again and hands a valid result to ``apply``."""

    def __init__(
        self,
        path: str,
        current: Callable[[], RelayConfig],
        apply: Callable[[RelayConfig], None],
        on_outcome: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.path = path
        self.current = current
        self.apply = apply
        self.on_outcome = on_outcome
        self.started = current()  # restart-only settings stay as they were at start
        self._lock = asyncio.Lock()
        self._fingerprint = self._read_fingerprint()

    def _read_fingerprint(self) -> bytes | None:
        try:
            return hashlib.sha256(Path(self.path).read_bytes()).digest()
        except OSError:
            return None

    def _read_still(self) -> bytes | None:
        """The file's bytes, or None when it changed while being read (a write in progress).

        Then the watcher sees the change and comes back once the file holds still.
        """
        before = self._stat()
        data = read_config(self.path)
        return data if self._stat() == before else None

    async def reload(self, trigger: str) -> bool:
        async with self._lock:
            try:
                data = await asyncio.to_thread(self._read_still)
                if data is None:
                    log.info("config.reload_deferred", trigger=trigger, path=self.path)
                    return False
                self._fingerprint = hashlib.sha256(data).digest()
                new = await asyncio.to_thread(parse_config, data, self.path)
                refused = weakenings(self.current(), new)
                if refused:
                    raise ConfigError(refused)
            except ConfigError as exc:
                message = "\n".join(f"error: {p}" for p in exc.problems)
                log.error("config.reload_failed", trigger=trigger, path=self.path, message=message)
                self.on_outcome("failed")
                return False
            old = self.current()
            needs_restart = restart_required(self.started, new)
            REDACTOR.update(new.secrets | old.secrets, new.settings.logging.mask_hwid)
            self.apply(new)
            log.info(
                "config.reloaded",
                trigger=trigger,
                path=self.path,
                routes=len(new.table.routes),
                destinations=len(new.destinations),
                **({"restart_required": needs_restart} if needs_restart else {}),
            )
            for warning in new.warnings:
                log.warning("config.warning", message=str(warning))
            self.on_outcome("succeeded")
            return True

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def watch(self, interval: float = 0.5, settle: float = 0.25) -> None:
        """Reload when the file's content changes and has stopped changing.

        Editors and `cat >` write in steps; reading mid-write could load a half (or
        empty, hence valid and route-less) file, so a change must hold still for
        ``settle`` seconds first. Content, not mtime, decides whether it changed.
        """
        last = self._stat()
        while True:
            await asyncio.sleep(interval)
            stat = self._stat()
            if stat is None or stat == last:
                continue
            while True:
                await asyncio.sleep(settle)
                again = self._stat()
                if again == stat:
                    break
                stat = again
            last = stat
            if self._read_fingerprint() != self._fingerprint:
                await self.reload("file")

    def install_sighup(self) -> bool:
        """Reload on SIGHUP; only possible on the main thread's loop."""
        import signal

        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
            return True
        return False
