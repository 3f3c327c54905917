"""Shared fixtures and helpers: the bedside binary, small phantom cohorts generated once per
session, free loopback ports and a running `bedside annotate serve` with signed-in clients."""

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def bedside_binary() -> pathlib.Path:
    env = os.environ.get("BEDSIDE_BIN")
    if env:
        return pathlib.Path(env)
    built = [ROOT / "target" / profile / "bedside" for profile in ("release", "debug")]
    built = [p for p in built if p.exists()]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)  # the freshest build
    pytest.fail("bedside binary not found: build it (cargo build --release -p bedside-cli) or set BEDSIDE_BIN")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("BEDSIDE_REQUIRE_PEERS") == "1":
            pytest.fail(f"{name} is required (BEDSIDE_REQUIRE_PEERS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def bedside():
    return bedside_binary()


@pytest.fixture(scope="session")
def cohort(tmp_path_factory, bedside):
    """Ten patients over three sites, half the studies with text inside the sector."""
    out = tmp_path_factory.mktemp("phantom") / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(out), "--patients", "10", "--seed", "5",
         "--rows", "240", "--columns", "320", "--in-sector-text", "0.5"],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def cohort_full_size(tmp_path_factory, bedside):
    """Three patients at the default 480x640 with the default mix of encodings."""
    out = tmp_path_factory.mktemp("phantom_full") / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(out), "--patients", "3", "--seed", "9",
         "--in-sector-text", "1.0"],
        check=True,
    )
    return out


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AnnotateClient:
    """Signs in to `bedside annotate serve` through its API and sends the session cookie and
    CSRF token with every call."""

    def __init__(self, root: str, username: str, password: str, context=None):
        self.root = root
        self.context = context
        req = urllib.request.Request(
            root + "/api/login", method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            self.login_headers = r.headers
            cookies = [c.split(";")[0] for c in r.headers.get_all("Set-Cookie")]
            self.headers = {"Cookie": "; ".join(cookies),
                            "X-CSRF-Token": json.loads(r.read())["csrf_token"]}

    def call(self, method, path, body=None, accept=None):
        """(status, headers, body bytes); HTTP errors are returned, not raised."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if accept:
            headers["Accept"] = accept
        req = urllib.request.Request(self.root + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120, context=self.context) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, method, path, body=None):
        """The parsed reply of a call that must succeed (None for an empty body)."""
        status, _, data = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {data[:500]!r}"
        return json.loads(data) if data else None


class ServerRoot(str):
    """A served root URL that also holds the server's process (`.proc`)."""

    proc: subprocess.Popen


@contextlib.contextmanager
def annotate_server(bedside, dicom: pathlib.Path, data: pathlib.Path, users: dict, tls=None,
                    database=None, prepare=True):
    """Imports `dicom` into the data folder `data`, adds `users` (name -> (password,
    superuser)), serves it on a free loopback port and yields the root URL. With `tls`
    ((certificate, key, ssl context trusting it)) it serves HTTPS. With `database` (a
    PostgreSQL URL) the index, accounts and annotations live there (given to `user add` through
    BEDSIDE_DATABASE_URL, to the other commands as --database). `prepare=False` skips the
    import and the accounts (a second server on the same data)."""
    db_args = ["--database", database] if database else []
    if prepare:
        run = subprocess.run(
            [str(bedside), "annotate", "import", str(dicom), "--data", str(data), *db_args],
            capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        env = dict(os.environ)
        if database:
            env["BEDSIDE_DATABASE_URL"] = database
        for user, (password, superuser) in users.items():
            run = subprocess.run(
                [str(bedside), "annotate", "user", "add", user, "--data", str(data)]
                + (["--superuser"] if superuser else []),
                input=password + "\n", capture_output=True, text=True, env=env)
            assert run.returncode == 0, run.stderr
    port = free_port()
    extra, context, scheme = [], None, "http"
    if tls is not None:
        extra = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        context, scheme = tls[2], "https"
    proc = subprocess.Popen(
        [str(bedside), "annotate", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
         *extra, *db_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = f"{scheme}://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(root + "/healthz", timeout=2, context=context) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("server did not start: " + proc.stderr.read().decode(errors="replace"))
        time.sleep(0.1)
    root = ServerRoot(root)
    root.proc = proc
    try:
        yield root
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
