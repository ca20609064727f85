"""A gate's link to its broker that can be cut: a small TCP relay on a loopback port
between one gate and the broker. `down()` closes every connection through it and
refuses new ones (the gate sees the network go away: a dropped connection, then
refused reconnects, as when a cable or a 4G modem fails); `up()` lets it in again.

A drill with several gates and `--broker` gives each gate one (`link: down` and
`link: up` steps); tests use it to cut one real `gate run` daemon off its site
without root network tools. Plain TCP only: the relay sees bytes, not MQTT.
"""
from __future__ import annotations

import socket
import threading


class LinkCut:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((host, 0))
        self._srv.listen(64)
        self._srv.settimeout(0.2)
        self.port: int = self._srv.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._up = True
        self._closed = threading.Event()
        self.cuts = 0  # connections cut by down()
        self._thread = threading.Thread(target=self._accept, name=f"linkcut-{self.port}", daemon=True)
        self._thread.start()

    @classmethod
    def to_url(cls, url: str) -> "LinkCut":
        """A relay to the broker of ``mqtt://HOST:PORT``."""
        if not url.startswith("mqtt://"):
            raise ValueError(f"{url}: a cuttable link relays plain mqtt:// only")
        rest = url.split("://", 1)[1].rstrip("/")
        host, _, port = rest.partition(":")
        return cls(host, int(port) if port else 1883)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._up

    def down(self) -> None:
        with self._lock:
            self._up = False
            conns, self._open = list(self._open), set()
            self.cuts += len(conns)
        for c in conns:
            _shut(c)

    def up(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self._closed.set()
        self.down()
        self._thread.join(2)
        self._srv.close()

    def __enter__(self) -> "LinkCut":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self._up:
                _shut(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _shut(client)  # the broker is away: the gate sees that too
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if not self._up:
                    _shut(client)
                    _shut(upstream)
                    continue
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _shut(src)
            _shut(dst)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
