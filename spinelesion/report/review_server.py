"""``spinelesion review OUT``: a local, read-only HTTP server for a run folder.

Browsers do not let a page opened from ``file://`` read the volumes beside it, so the interactive
viewer (``<case>/viewer.html``) needs an HTTP origin. This server gives it one and nothing more:

- bound to 127.0.0.1 only (never another interface); requests naming another host in their
  ``Host`` header are refused (a web page elsewhere cannot reach it through DNS rebinding);
- GET and HEAD only (any other method: 405); files under the run folder only: no ``..`` escape, no
  symbolic link leading outside it, no hidden file (``.name``: temporaries, version control), no
  directory listing (``/`` redirects to ``/report.html``); and, under ``/_viewer/``, the viewer's
  scripts from the installed package (``spinelesion.report.viewer.STATIC_FILES``), which runs do not
  copy;
- nothing is written: the run folder is only read.

The standard library's ``http.server`` does the HTTP; one thread per request.
"""

from __future__ import annotations

import http.server
import os
import posixpath
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from spinelesion.errors import SpinelesionError
from spinelesion.report.viewer import ASSETS_URL, static_file

#: Port used when none is given (0 picks a free one).
DEFAULT_PORT = 8765
#: The only interface the server listens on.
HOST = "127.0.0.1"
#: The page a bare ``/`` leads to.
REPORT = "report.html"


class ReviewError(SpinelesionError):
    """The folder cannot be reviewed (no report.html) or the server cannot start (port taken)."""


def check_run_folder(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` resolved, once it is a folder holding ``report.html``; raises ReviewError otherwise."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise ReviewError(f"{path}: no such folder (give the --out folder of `spinelesion infer`)")
    if not (path / REPORT).is_file():
        raise ReviewError(f"{path}: no {REPORT} here (give the --out folder of a finished `spinelesion infer`)")
    return path.resolve()


class _ReadOnlyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves regular, non-hidden files inside ``directory``; see the module docstring."""

    server_version = "spinelesion-review"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self._allowed():
            super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        if self._allowed():
            super().do_HEAD()

    def _refuse_method(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _allowed(self) -> bool:
        """Whether the request may be answered from a file (else the error response is sent)."""
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            self.send_error(403, "requests must name 127.0.0.1 or localhost as their host")
            return False
        route = unquote(urlsplit(self.path).path)
        if route in ("", "/"):
            self.send_response(302)
            self.send_header("Location", "/" + REPORT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        if self.translate_path(self.path) is None:
            self.send_error(404, "not found")
            return False
        return True

    def translate_path(self, path: str) -> str | None:
        """The file a URL path names (see :func:`_served_file`), None when there is none to serve."""
        route = unquote(urlsplit(path).path)
        if route.startswith(f"/{ASSETS_URL}/"):
            found = static_file(route[len(ASSETS_URL) + 2:])
            return str(found) if found is not None and found.is_file() else None
        found = _served_file(Path(self.directory), route)
        return None if found is None else str(found)

    def list_directory(self, path):  # never reached (_allowed refuses folders); no listing regardless
        self.send_error(404, "not found")
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:  # quiet: one line per refused request only
        if isinstance(code, int) and code >= 400 and not self.path.endswith("favicon.ico"):
            sys.stderr.write(f"review: {self.command} {urlsplit(self.path).path} -> {int(code)}\n")

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's own lines stay off
        pass


def _served_file(root: Path, route: str) -> Path | None:
    """The regular file under ``root`` that URL path ``route`` names, or None: hidden parts, ``..``,
    folders, missing files and anything whose real path (links followed) leaves ``root`` give None."""
    parts = [p for p in posixpath.normpath("/" + route.replace("\\", "/")).split("/") if p]
    if not parts or any(p.startswith(".") or "\x00" in p for p in parts):
        return None
    path = root.joinpath(*parts)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real


class ReviewServer(http.server.ThreadingHTTPServer):
    """The HTTP server of :func:`make_server` (request threads never hold up an exit)."""

    daemon_threads = True
    allow_reuse_address = True

    @property
    def url(self) -> str:
        """Address of the run's report on this server."""
        return f"http://{HOST}:{self.server_address[1]}/{REPORT}"


def make_server(*, run_dir: str | os.PathLike, port: int = DEFAULT_PORT) -> ReviewServer:
    """A server for ``run_dir`` on 127.0.0.1:``port`` (0: a free port), bound but not yet serving.

    Raises ReviewError when the folder holds no report.html or the port cannot be taken.
    """
    root = check_run_folder(run_dir)
    if not 0 <= int(port) <= 65535:
        raise ReviewError(f"--port {port}: a port is 0..65535 (0 picks a free one)")
    try:
        return ReviewServer((HOST, int(port)), partial(_ReadOnlyHandler, directory=str(root)))
    except OSError as err:
        raise ReviewError(f"cannot listen on {HOST}:{port} ({err.strerror or err}); "
                          "pass another --port, or --port 0 for any free one") from None


def serve(*, run_dir: str | os.PathLike, port: int = DEFAULT_PORT,
          announce: Callable[[str], None] = print) -> None:
    """Serve ``run_dir`` read-only until Ctrl-C (or SIGTERM); ``announce`` gets one line with the URL."""
    import signal

    server = make_server(run_dir=run_dir, port=port)
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def stop(signum, frame):  # SIGTERM stops it as Ctrl-C does
        raise KeyboardInterrupt

    try:  # SIGINT too: a process started in the background by a shell inherits SIGINT ignored
        for s in signals:
            signal.signal(s, stop)
    except ValueError:  # not the main thread (tests): Ctrl-C only
        previous = None
    announce(f"serving {check_run_folder(run_dir)} read-only at {server.url} (Ctrl-C stops)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if previous is not None:
            for s, handler in previous.items():
                signal.signal(s, handler)
    announce("review server stopped")
