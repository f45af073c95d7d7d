"""HTTP that a hostile or broken server cannot stretch: a wall-clock deadline per exchange, bodies read up to a cap.

The LLM critics (critics.py) and the Kimina Lean Server's client (mathlib/kimina.py) both talk to servers they do
not control. A read timeout bounds each recv, not the exchange: a server that sends a byte every second never
trips it, in the headers or in the body. So an exchange runs under a Deadline: at the deadline a watchdog shuts
the socket of every connection the exchange used (shutdown, not close: it wakes a recv blocked in the calling
thread), and the blocked read, write or TLS handshake ends with an error; `deadline.expired` says why. Bodies are
read streamed (`read`), at most `cap` bytes, so a 300 MB answer costs a few MB, not a gigabyte.

    with exchange.Deadline(30) as deadline:
        r = exchange.session().post(url, json=body, stream=True, timeout=(deadline.left(), deadline.left()))
        body, whole = exchange.read(r, cap=1 << 20, deadline=deadline)

The connections find their exchange through the thread (one exchange at a time per thread). What cannot be cut
this way: a DNS lookup (bounded by the system resolver) and SOCKS proxies (their own connection classes).
"""
import http.client
import socket
import threading
import time

import requests
import urllib3
from requests.adapters import HTTPAdapter

# what a failed exchange raises (requests' own errors are OSErrors; urllib3's and http.client's may escape it)
NETWORK = (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException)
_current = threading.local()      # .exchange: the Deadline this thread is running, for its connections to join


class Deadline:
    """One exchange's wall-clock deadline (see the module docstring); `expired` once it has passed."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.conn, self.socks, self.expired, self.done = None, [], False, threading.Event()

    def __enter__(self):
        _current.exchange = self
        threading.Thread(target=self._watch, daemon=True, name="http-deadline").start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        _current.exchange = None

    def left(self) -> float:
        return max(0.01, self.deadline - time.monotonic())

    def _watch(self):
        if self.done.wait(self.left()):
            return
        self.expired = True
        while not self.done.is_set():      # again until it ends: the connection may still be connecting (bounded)
            for sock in [getattr(self.conn, "sock", None), *self.socks]:
                if sock is not None:
                    try:
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)   # the plain socket's: an SSLSocket's own
                    except (OSError, TypeError, ValueError):             # would drop its SSL object under the reader
                        pass
            self.done.wait(0.05)


class _Tracked:
    """A urllib3 connection that tells the thread's Deadline it is the one in use (connect: a TLS handshake comes
    before request; request: a kept-alive connection does not connect again), and its socket: a connection that
    will close after this answer hands the socket to the answer and forgets it (http.client), the body's reads
    still block on it."""

    def connect(self, *args, **kwargs):
        self._join()
        try:
            return super().connect(*args, **kwargs)
        finally:
            self._join()

    def request(self, *args, **kwargs):
        self._join()
        return super().request(*args, **kwargs)

    def _join(self):
        exchange = getattr(_current, "exchange", None)
        if exchange is not None:
            exchange.conn = self
            if getattr(self, "sock", None) is not None:
                exchange.socks.append(self.sock)


_tracked_pools = {}


def _tracked(pool_cls):
    if pool_cls not in _tracked_pools:
        conn_cls = type(f"Tracked{pool_cls.ConnectionCls.__name__}", (_Tracked, pool_cls.ConnectionCls), {})
        _tracked_pools[pool_cls] = type(f"Tracked{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": conn_cls})
    return _tracked_pools[pool_cls]


class _Adapter(HTTPAdapter):
    """requests' adapter whose connections join the thread's Deadline (direct, and through an http(s) proxy)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self._track(self.poolmanager)

    def proxy_manager_for(self, *args, **kwargs):
        manager = super().proxy_manager_for(*args, **kwargs)
        self._track(manager)
        return manager

    @staticmethod
    def _track(manager):
        manager.pool_classes_by_scheme = {k: _tracked(v) for k, v in manager.pool_classes_by_scheme.items()}


def session() -> requests.Session:
    """A requests Session whose exchanges a Deadline can cut."""
    s = requests.Session()
    for prefix in ("http://", "https://"):
        s.mount(prefix, _Adapter())
    return s


def read(response, cap: int, deadline: Deadline, chunk: int = 64 << 10) -> tuple[bytes, bool]:
    """(body, whole): the body of a streamed response, at most `cap` bytes of it; whole=False when there was more.
    Stops early when the deadline has passed (the caller checks deadline.expired)."""
    data = bytearray()
    for piece in response.iter_content(chunk):
        data += piece
        if len(data) > cap:
            return bytes(data[:cap]), False
        if deadline.expired:
            break
    return bytes(data), True
