"""A loopback HTTP server for download tests: serves given bytes per path on 127.0.0.1, no internet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    truncate: bool = False  # announce the full Content-Length, send half the body, then close
    trickle_s: float = 0.0  # > 0: send the body one byte every trickle_s seconds (too slow to finish)


@dataclass
class Loopback:
    base_url: str
    routes: dict[str, Route]
    hits: list[str] = field(default_factory=list)  # paths requested, in order


@contextmanager
def serve(routes: dict[str, Route]) -> Iterator[Loopback]:
    """Serve ``routes`` (path -> Route) on 127.0.0.1 in a thread; unknown paths answer 404."""
    state = Loopback("", routes)
    stop = threading.Event()  # set on shutdown, so a trickling handler ends at once

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            route = state.routes.get(self.path, Route(b"not found", 404))
            self.send_response(route.status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.trickle_s > 0:
                try:
                    for k in range(len(route.body)):
                        self.wfile.write(route.body[k : k + 1])
                        self.wfile.flush()
                        if stop.wait(route.trickle_s):
                            break
                except OSError:  # the client gave up: the point of the test
                    pass
                self.close_connection = True
                return
            if route.truncate:
                self.wfile.write(route.body[: len(route.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(route.body)

        def log_message(self, *args) -> None:  # noqa: ARG002 - keep test output quiet
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
