"""`relay serve`: bind, run uvicorn with the app, exit 0 on SIGTERM/SIGINT.

The socket is bound here, before uvicorn starts, so a taken port is one clear
line and exit 1 rather than a server log and a traceback. The soft limit on
open files is raised to the hard one first (systemd and most shells start
services at 1,024), and connections are served by :mod:`relay.http_protocol`,
which cuts off slow and idle clients and caps their number.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
import socket
import time
from collections.abc import Callable

import uvicorn

from . import logs
from .app import create_app
from .config import RelayConfig, load_config
from .errors import RelayError
from .http_protocol import ConnectionLimits, connection_cap, protocol_class
from .logs import REDACTOR, configure, get_logger
from .queue import open_queue


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or exc
        raise RelayError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _check_queue(url: str) -> None:
    """Fail with one line before starting when the queue cannot be opened (not a traceback)."""
    queue = open_queue(url)
    await queue.open()
    await queue.close()


def process_roles(workers: int, role: str | None) -> list[str]:
    """The role of each server process: ``role`` for all of them when given; else one
    process does everything, and several split into receivers and workers.

    Measured on two cores (README, Performance), a receiver beside a worker keeps up
    with about 1.5 times the flow of one process (end to end, backlog flat).
    """
    if role is not None:
        return [role] * workers
    if workers == 1:
        return ["all"]
    delivering = workers // 2
    return ["worker"] * delivering + ["receiver"] * (workers - delivering)


def serve(
    config_path: str,
    host: str | None,
    port: int | None,
    workers: int = 1,
    role: str | None = None,
) -> int:
    """Run the relay; with ``workers`` > 1, that many processes share the listening socket.

    ``role`` splits the work between processes: ``receiver`` answers webhooks and
    leaves delivery to a ``worker`` process on the same queue, which serves everything
    but the webhook path. Receiving and delivering then each get a core of their own
    instead of sharing one event loop; ``all`` does both (see :func:`process_roles`).
    """
    config = load_config(config_path)
    settings = config.settings
    configure(settings.logging.level, settings.logging.format)
    REDACTOR.update(config.secrets, settings.logging.mask_hwid)
    log = get_logger("relay")
    for warning in config.warnings:
        log.warning("config.warning", message=str(warning))
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    fd_limit = raise_fd_limit()
    limits = ConnectionLimits(
        header_timeout=float(settings.server.header_timeout),
        body_timeout=float(settings.server.body_timeout),
        max_connections=connection_cap(settings.server.max_connections, fd_limit),
    )
    if limits.max_connections < settings.server.max_connections:
        log.warning(
            "server.max_connections_lowered",
            configured=settings.server.max_connections,
            max_connections=limits.max_connections,
            fd_limit=fd_limit,
            hint="raise the hard limit on open files (ulimit -Hn, LimitNOFILE=)",
        )
    asyncio.run(_check_queue(settings.queue.url))
    roles = process_roles(workers, role)
    sock = bind(host, port)
    log.info(
        "relay.listening",
        host=host,
        port=sock.getsockname()[1],
        path=settings.server.path,
        workers=workers,
        roles=",".join(roles),
        max_connections=limits.max_connections,
        fd_limit=fd_limit,
    )
    if workers <= 1:
        return _run_server(config, config_path, sock, limits, roles[0])

    def child(slot: int) -> int:
        if roles[slot] == "worker" and role is None:
            # Split from the receivers: no share of the public socket (webhooks sent to it
            # would find no webhook path); health, metrics and console on a loopback port.
            own = bind("127.0.0.1", 0)
            log.info("relay.listening", host="127.0.0.1", port=own.getsockname()[1], role="worker")
            return _run_server(config, config_path, own, limits, "worker")
        return _run_server(config, config_path, sock, limits, roles[slot])

    return _supervise(workers, child)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit now in force.

    Connections, the queue and outgoing requests all take descriptors, and the
    soft limit most services start with (1,024) is far below what the hard limit
    allows. Where the hard limit cannot be taken as is (macOS reports "unlimited"),
    the soft one stays.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _run_server(
    config: RelayConfig,
    config_path: str,
    sock: socket.socket,
    limits: ConnectionLimits,
    role: str = "all",
) -> int:
    """One server process: receiver and delivery workers on one event loop (or one of
    them, by ``role``)."""
    log = get_logger("relay")
    app = create_app(
        config,
        config_path=config_path,
        listen_host=str(sock.getsockname()[0]),
        run_workers=role != "receiver",
        receiving=role != "worker",
    )
    uv = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(config.settings.server.shutdown_grace)),
        # uvicorn types it int; it only hands it to loop.call_later, which takes seconds
        timeout_keep_alive=float(config.settings.server.keepalive_timeout),  # type: ignore[arg-type]
        loop="auto",
        http=protocol_class(limits),
        ws="none",
        server_header=False,
        # The peer is the socket's: X-Forwarded-For is judged once, by the app, against
        # `server.trusted_proxies` (uvicorn would believe any loopback peer's on its own).
        proxy_headers=False,
    )
    server = uvicorn.Server(uv)
    # We own the signals: uvicorn would re-raise SIGTERM after its graceful shutdown, making
    # the exit status "killed by SIGTERM" instead of the 0 the contract promises.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def stop(sig: signal.Signals) -> None:
            # A second Ctrl-C forces; SIGTERM never does: with --workers, a service manager
            # signals the whole process group and the supervisor forwards it again.
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True
            log.info("relay.stopping", signal=sig.name)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop, sig)
        await server.serve(sockets=[sock])

    # What exists now (modules, the app, compiled rules) lives as long as the process: out
    # of the collector's way, full collections walk only what requests leave behind.
    gc.collect()
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run())
    finally:
        logs.flush()  # the last turn's lines; a forked child leaves with os._exit
    if not server.started:
        log.error("relay.start_failed", error="the application did not start; see above")
        return 1
    return 0


def _supervise(workers: int, child: Callable[[int], int]) -> int:
    """Fork ``workers`` server processes, pass signals on, restart one that dies unasked.

    Forking before any event loop or thread exists keeps the children clean; each
    child is a relay on the shared queue, in the role ``child(slot)`` gives its slot
    (a replacement takes the same role).
    """
    log = get_logger("relay")
    children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started at)
    stopping = False
    quick_deaths = 0

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            # The parent's handlers would forward signals to the siblings from here.
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = child(slot)
            finally:
                logs.flush()
                os._exit(code)
        children[pid] = (slot, time.monotonic())

    def forward(sig: int, _: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for slot in range(workers):
        spawn(slot)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        entry = children.pop(pid, None)
        if entry is None:
            continue
        slot, started = entry
        exit_code = os.waitstatus_to_exitcode(code)
        if stopping:
            status = status or (exit_code if exit_code > 0 else 0)
            continue
        log.error("relay.worker_died", pid=pid, exit_code=exit_code)
        quick_deaths = quick_deaths + 1 if time.monotonic() - started < 10 else 0
        if quick_deaths >= 5:  # it cannot start: stop instead of restarting forever
            log.error("relay.giving_up", reason="server processes keep dying at start")
            forward(signal.SIGTERM, None)
            status = 1
            continue
        time.sleep(1)
        spawn(slot)
    return status


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
