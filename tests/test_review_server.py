"""`spinelesion review` (issue 14): a read-only server on 127.0.0.1 for a run folder, and the
viewer's scripts shipped as package data."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import signal
import subprocess
import sys

from spinelesion.cli import main
from spinelesion.report.viewer import VIEWER_IMAGE, static_file
from viewer_run import REPO, served, viewer_run  # noqa: F401 (fixtures)


def _request(base: str, path: str, *, method: str = "GET", host: str | None = None):
    port = int(base.rstrip("/").rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.headers, body


def test_review_serves_the_run_read_only_and_nothing_outside_it(served, tmp_path_factory):
    base, run_dir, _ = served
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("secret")
    (run_dir / "link.txt").unlink(missing_ok=True)
    (run_dir / "link.txt").symlink_to(outside)
    (run_dir / ".hidden").write_text("x")
    status, headers, body = _request(base, "/report.html")
    assert status == 200 and b"spinelesion review report" in body and headers["Cache-Control"] == "no-store"
    status, headers, body = _request(base, "/ct_ras/viewer_image.nii.gz", method="HEAD")
    assert status == 200 and body == b"" and "Content-Encoding" not in headers
    assert int(headers["Content-Length"]) == (run_dir / "ct_ras" / VIEWER_IMAGE).stat().st_size
    assert _request(base, "/")[0] == 302
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/ct_ras/../../secret.txt", "/link.txt", "/.hidden",
                 "/ct_ras/", "/ct_ras", "/nothing.html", "/_viewer/page.py", "/_viewer/../html.py"):
        assert _request(base, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE"):
        assert _request(base, "/report.html", method=method)[0] == 405
    assert _request(base, "/report.html", host="evil.example:80")[0] == 403
    status, headers, body = _request(base, "/_viewer/niivue.umd.js")  # from the package, not the run
    assert status == 200 and headers["Content-Type"].endswith("javascript")
    vendored = (REPO / "spinelesion/report/viewer/VENDORED.md").read_text()
    assert hashlib.sha256(body).hexdigest() in vendored
    assert body == static_file("niivue.umd.js").read_bytes() and not (run_dir / "_viewer").exists()


def test_review_refuses_a_folder_without_a_report(tmp_path, capsys):
    assert main(["review", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no report.html" in err and "Traceback" not in err
    assert main(["review", str(tmp_path / "missing")]) == 2


def test_review_command_prints_its_url_and_stops_on_ctrl_c(viewer_run):
    run_dir, _ = viewer_run
    # started with SIGINT ignored, as a shell starts a background job: Ctrl-C / kill -INT must still stop it
    process = subprocess.Popen([sys.executable, "-m", "spinelesion", "review", str(run_dir), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/report\.html", line)
        assert url, line
        assert _request(url[0].rsplit("/", 1)[0] + "/", "/report.html")[0] == 200
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)   # a safety net, not a timing
    assert process.returncode == 0 and "stopped" in out and "Traceback" not in err, (out, err)


def test_the_viewer_scripts_ship_as_package_data():
    text = (REPO / "pyproject.toml").read_text()
    assert '"report/viewer/static/*"' in text and '"selenium' in text
    for name in ("niivue.umd.js", "LICENSE.niivue.txt", "viewer.js", "viewer.css"):
        assert static_file(name).is_file()
    assert static_file("niivue.umd.js").stat().st_size < 5_000_000
    assert "BSD 2-Clause" in static_file("LICENSE.niivue.txt").read_text()
