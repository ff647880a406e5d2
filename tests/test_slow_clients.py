"""Slow, idle and too many clients against a real `relay serve`, over raw sockets.

CONTRACT section 10: slow or idle clients are cut off by header and keep-alive
timeouts (configurable under `server`), the process raises its soft limit on
open files to the hard one, and connections beyond the cap get a JSON 503
rather than a refused connection. Timeouts are kept short through the config.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from relay.http_protocol import MAX_HEAD_BYTES, connection_cap

from .process import Server, clean_env, free_port, wait

TIMEOUT = 1.0  # every deadline of the server under test
MAX_CONNECTIONS = 4
GIVE_UP = 10.0  # how long a test waits for something the server must do after TIMEOUT


def write_config(tmp_path: Path, **server: Any) -> Path:
    settings = {
        "header_timeout": f"{TIMEOUT}s",
        "body_timeout": f"{TIMEOUT}s",
        "keepalive_timeout": f"{TIMEOUT}s",
        "max_connections": MAX_CONNECTIONS,
        **server,
    }
    path = tmp_path / "relay.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            server: {json.dumps(settings)}
            queue: {{url: "sqlite:///{tmp_path}/queue.db"}}
            logging: {{format: json}}
            destinations: {{log: {{type: log}}}}
            routes: [{{name: all, to: [log]}}]
            """
        )
    )
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slow")
    srv = Server(tmp, write_config(tmp))
    yield srv
    srv.stop()


def connect(srv: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.settimeout(GIVE_UP)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) off a kept-alive connection."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += _more(sock, raw)
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(parse_head(head)[1]["content-length"])
    while len(body) < length:
        body += _more(sock, body)
    return head + b"\r\n\r\n" + body


def read_responses(sock: socket.socket, n: int) -> list[bytes]:
    """``n`` whole responses off one connection, however they arrive (pipelined answers
    may come in one piece)."""
    buffer, out = b"", []
    while len(out) < n:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if sep:
            length = int(parse_head(head)[1]["content-length"])
            if len(rest) >= length:
                out.append(head + sep + rest[:length])
                buffer = rest[length:]
                continue
        buffer += _more(sock, buffer)
    return out


def _more(sock: socket.socket, so_far: bytes) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError(f"the server closed the connection after {so_far[:300]!r}")
    return chunk


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), dict(line.lower().split(": ", 1) for line in lines[1:])


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return (*parse_head(head), json.loads(body))


def request(path: str = "/healthz", *, close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: relay\r\n{extra}\r\n".encode()


def wait_closed(srv: Server) -> None:
    """Until the server has dropped the connections of earlier tests (its cap counts them)."""

    def fresh_request_served() -> bool:
        with connect(srv) as sock:
            sock.sendall(request(close=True))
            return parse(read_until_closed(sock))[0] == 200

    wait(fresh_request_served, timeout=GIVE_UP)


# -- header timeout ------------------------------------------------------------------------
def test_a_silent_connection_is_closed_after_the_header_timeout(server: Server) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""  # closed, nothing said: there was no request
        assert time.monotonic() - started >= TIMEOUT * 0.9


def test_trickled_headers_do_not_stretch_the_deadline(server: Server) -> None:
    """A byte every 100 ms would take ~8 s: the head's deadline is absolute, not per byte."""
    head = b"POST /webhooks/pushwoosh HTTP/1.1\r\nHost: relay\r\nX-Slow: " + b"a" * 40 + b"\r\n"
    with connect(server) as sock:
        sent = 0
        try:
            for byte in head:
                sock.send(bytes([byte]))
                sent += 1
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server hung up mid-trickle, as it should
        answer = read_until_closed(sock)
    assert sent < len(head)
    status, headers, body = parse(answer)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body == {"error": f"request head not received within {TIMEOUT:g}s"}


def test_a_trickled_body_is_cut_off_after_the_body_timeout(server: Server) -> None:
    head = b"POST /webhooks/pushwoosh HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n{"
    with connect(server) as sock:
        sock.sendall(head)
        status, _, body = parse(read_until_closed(sock))
    assert status == 408
    assert body == {"error": f"request body not received within {TIMEOUT:g}s"}
    # ... and the app, which was waiting for the rest, logged the request as rejected
    lines = wait(
        lambda: [e for e in server.lines() if e["event"] == "event.rejected" and e["status"] == 408]
    )
    assert lines[0]["reason"] == "the body did not arrive in full"


# -- keep-alive ----------------------------------------------------------------------------
def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with connect(server) as sock:
        for _ in range(2):  # the connection is kept alive: a second request is served
            sock.sendall(request())
            status, headers, _ = parse(read_response(sock))
            assert status == 200 and "connection" not in headers
        started = time.monotonic()
        assert read_until_closed(sock) == b""  # then, idle, it is closed
        assert time.monotonic() - started >= TIMEOUT * 0.9


# -- malformed and oversized heads ---------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: relay\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: relay\r\n\r\n", 431),
    ],
    ids=["garbage", "huge-header", "huge-url"],
)
def test_bad_request_heads_get_a_json_answer(server: Server, raw: bytes, status: int) -> None:
    with connect(server) as sock:
        sock.sendall(raw)
        got, headers, body = parse(read_until_closed(sock))
    assert got == status
    assert headers["content-type"] == "application/json"
    assert isinstance(body["error"], str) and body["error"]


# -- answers on the wire (one write per loop turn: relay/http_protocol.py _TurnWriter) ----
def test_pipelined_requests_get_whole_answers_in_order(server: Server) -> None:
    wait_closed(server)
    with connect(server) as sock:
        sock.sendall(request() + request("/no-such-page") + request("/schema/openapi.json"))
        first, second, third = read_responses(sock, 3)
    assert parse(first)[0] == 200 and parse(first)[2]["status"] == "ok"
    assert parse(second)[0] == 404
    status, headers, document = parse(third)
    assert status == 200 and headers["content-type"].startswith("application/")
    assert document["openapi"].startswith("3.")


def test_expect_100_continue_is_answered_before_the_body_is_sent(server: Server) -> None:
    """The interim answer must leave at once: the client holds its body until it comes."""
    wait_closed(server)
    body = (Path(__file__).parents[1] / "examples" / "email-sent.json").read_bytes()
    with connect(server) as sock:
        sock.sendall(
            b"POST /webhooks/pushwoosh HTTP/1.1\r\nHost: relay\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, answer = parse(read_response(sock))
    assert status == 200 and answer["accepted"] == 1


def test_an_answer_with_connection_close_arrives_whole_before_the_close(server: Server) -> None:
    wait_closed(server)
    with connect(server) as sock:
        sock.sendall(request("/schema/openapi.json", close=True))
        raw = read_until_closed(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert parse_head(head)[0] == 200
    assert len(body) == int(parse_head(head)[1]["content-length"])
    assert json.loads(body)["openapi"].startswith("3.")


# -- connection cap ------------------------------------------------------------------------
def test_beyond_the_cap_a_request_gets_a_json_503(server: Server) -> None:
    wait_closed(server)
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(server) as extra:
            extra.sendall(request())
            status, headers, body = parse(read_until_closed(extra))
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert headers["retry-after"] == "1"
        assert body == {"error": "too many open connections; retry shortly"}
    finally:
        for sock in held:
            sock.close()
    wait_closed(server)  # the cap counts open connections: closed ones free their place
    cut = [e for e in server.lines() if e["event"] == "http.cut_off"]
    assert any(e["reason"] == "max_connections" and e["max_connections"] == 4 for e in cut)


def test_the_cap_never_exceeds_half_the_file_descriptors() -> None:
    assert connection_cap(2048, 1 << 20) == 2048
    assert connection_cap(2048, 1024) == 512
    assert connection_cap(100, 150) == 75
    assert connection_cap(2048, 1) == 1


# -- file descriptors ----------------------------------------------------------------------
def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


@contextmanager
def soft_fd_limit(soft: int) -> Iterator[None]:
    """Children started meanwhile inherit this soft limit, as a service manager would set it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_the_soft_fd_limit_is_raised_to_the_hard_limit(tmp_path: Path, workers: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 512:
        pytest.skip("hard limit too low to lower the soft one")
    extra = ("--workers", str(workers)) if workers > 1 else ()
    with soft_fd_limit(256):
        srv = Server(tmp_path, write_config(tmp_path), extra=extra)
    try:
        assert open_files_limit(srv.proc.pid) == (hard, hard)
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        assert len(children) == (workers if workers > 1 else 0)
        for child in children:
            assert open_files_limit(int(child)) == (hard, hard)
        # and the hardened protocol serves in every process
        for _ in range(4):
            with connect(srv) as sock:
                sock.sendall(request(close=True))
                assert parse(read_until_closed(sock))[0] == 200
        # The public socket's line (a split-off worker also says where it listens).
        (line,) = [e for e in srv.lines() if e["event"] == "relay.listening" and "role" not in e]
        assert line["fd_limit"] == hard and line["max_connections"] == MAX_CONNECTIONS
    finally:
        assert srv.stop() == 0


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs /proc")
def test_a_low_hard_limit_lowers_the_cap_and_says_so(tmp_path: Path) -> None:
    """With at most 300 descriptors, 2,048 connections cannot all be served: the cap is 150.

    150 idle connections then get the next request a JSON 503, where the process
    would otherwise run out of descriptors and stop accepting connections at all.
    """
    config = write_config(tmp_path, max_connections=2048, header_timeout="20s")
    port = free_port()
    log_path = tmp_path / "relay.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config), "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300)),
        )
        try:
            wait(lambda: b"relay.started" in log_path.read_bytes(), timeout=GIVE_UP)
            assert open_files_limit(proc.pid) == (300, 300)
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP) as extra:
                    extra.sendall(request())
                    assert parse(read_until_closed(extra))[0] == 503
            finally:
                for sock in idle:
                    sock.close()

            def served() -> bool:
                with socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP) as sock:
                    sock.sendall(request(close=True))
                    return parse(read_until_closed(sock))[0] == 200

            wait(served, timeout=GIVE_UP)
        finally:
            proc.terminate()
            assert proc.wait(timeout=GIVE_UP) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    (lowered,) = [e for e in lines if e["event"] == "server.max_connections_lowered"]
    assert (lowered["configured"], lowered["max_connections"]) == (2048, 150)
    (listening,) = [e for e in lines if e["event"] == "relay.listening"]
    assert listening["max_connections"] == 150 and listening["fd_limit"] == 300
