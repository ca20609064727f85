"""The guard page while the gate waits for its store (a full disk, an I/O or a
permission error at start): one plain page on the guard page's address that says the
door is locked and why, and reloads itself until the real page takes the port over.

Standard library only: it must work when nothing else of the gate has started."""
from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What the guard reads, by StoreUnavailable.kind; the details (paths, codes) are in
# `systemctl status gate` and the journal, not on a page the LAN can see.
WHY = {
    "full": ("存储空间已满", "the disk is full"),
    "permission": ("没有权限读写数据库", "no permission to use the store"),
    "locked": ("数据库被其他程序占用", "another program holds the store"),
    "io": ("存储读写错误（SD 卡或磁盘故障？）", "an I/O error (a failing card or disk?)"),
}


class WaitingPage:
    def __init__(self, host: str, port: int) -> None:
        self.kind = "io"
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = page.render().encode()
                self.send_response(503)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Retry-After", "5")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="waiting-page", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def render(self) -> str:
        zh, en = WHY.get(self.kind, WHY["io"])
        return (
            '<!doctype html><html lang="zh"><head><meta charset="utf-8">'
            '<meta http-equiv="refresh" content="5"><title>门已锁 · Door locked</title>'
            '<style>body{font:2rem sans-serif;background:#7a1010;color:#fff;text-align:center;padding:8vh 4vw}'
            'h1{font-size:4rem;margin:0 0 1em}p{margin:.4em}</style></head><body>'
            "<h1>门已锁 · Door locked</h1>"
            f"<p>数据库暂不可用：{html.escape(zh)}。数据已保留，每 5 秒重试。</p>"
            f"<p>The store cannot be used: {html.escape(en)}. It is kept; retrying every 5 s.</p>"
            "<p>请联系管理员 · Call the site administrator</p></body></html>"
        )
