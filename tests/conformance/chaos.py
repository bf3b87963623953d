"""Planted-bug servers below HTTP: what a broken node does to a connection.

    hang       reads the request, never answers
    reset      accepts, then resets the connection (RST) without a byte
    garbage    answers 200 "application/json" with bytes that are not JSON
    truncated  promises a body (Content-Length) and closes halfway through it
    slow       answers correctly shaped JSON, but only after `delay` seconds

Loopback only; every connection is closed when the server stops.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

BEHAVIOURS = ("hang", "reset", "garbage", "truncated", "slow")


@contextmanager
def chaos_server(behaviour: str, delay: float = 30.0) -> Iterator[str]:
    """A server with the behaviour, on a free loopback port; yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()
    connections: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connections.append(connection)
            threading.Thread(target=_answer, args=(connection, behaviour, delay, stop),
                             daemon=True).start()  # fmt: skip

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for connection in connections:
            connection.close()


def _answer(connection: socket.socket, behaviour: str, delay: float, stop: threading.Event) -> None:
    try:
        connection.settimeout(5)
        while True:
            if not _read_request(connection):
                return
            if behaviour == "hang":
                stop.wait(timeout=120)
                return
            if behaviour == "reset":
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if behaviour == "garbage":
                _send(connection, b"\x89PNG\r\n\x1a\n not json at all \xff\xfe")
            elif behaviour == "truncated":
                body = b'{"nodeCode": "R4400001E", "role": "regio'
                head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 400\r\n\r\n")  # fmt: skip
                connection.sendall(head + body)
                return
            elif behaviour == "slow":
                if stop.wait(timeout=delay):
                    return
                _send(connection, b'{"status": "ok"}')
    except OSError:
        return
    finally:
        connection.close()


def _read_request(connection: socket.socket) -> bool:
    """Reads one request (headers and a Content-Length body); False when the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    deadline = time.monotonic() + 5
    while len(rest) < length and time.monotonic() < deadline:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        rest += chunk
    return True


def _send(connection: socket.socket, body: bytes) -> None:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    connection.sendall(head + body)
