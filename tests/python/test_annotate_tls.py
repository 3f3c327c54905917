"""`bedside annotate serve --tls-cert/--tls-key`: HTTPS in the binary, checked with Python's
ssl client against a certificate made by openssl. The API and DICOMweb answer over TLS, the
session cookies are Secure, and plain HTTP, garbage and a client that never finishes its
handshake are refused without holding up anyone else."""

import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pydicom
import pytest

from conftest import AnnotateClient, annotate_server, require_tool


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True)
    context = ssl.create_default_context(cafile=str(d / "cert.pem"))
    return d / "cert.pem", d / "key.pem", context


@pytest.fixture(scope="module")
def server(tmp_path_factory, bedside, tls_files):
    tmp = tmp_path_factory.mktemp("annotate_tls")
    cohort = tmp / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(cohort), "--patients", "1", "--seed", "4",
         "--rows", "64", "--columns", "96", "--frames", "4:4", "--no-masks"],
        check=True)
    users = {"tess": ("tess-password-1", True)}
    with annotate_server(bedside, cohort / "dicom", tmp / "data", users, tls=tls_files) as root:
        files = [pydicom.dcmread(p) for p in sorted((cohort / "dicom").rglob("*.dcm"))]
        yield root, tls_files[2], files


def test_sign_in_over_https_sets_secure_cookies(server):
    root, context, _ = server
    assert root.startswith("https://")
    client = AnnotateClient(root, "tess", "tess-password-1", context=context)
    cookies = client.login_headers.get_all("Set-Cookie")
    assert cookies and all("Secure" in c.split("; ") for c in cookies), cookies
    me = client.json("GET", "/api/me")
    assert me["username"] == "tess"


def test_dicomweb_answers_over_https(server):
    root, context, files = server
    client = AnnotateClient(root, "tess", "tess-password-1", context=context)
    status, headers, body = client.call("GET", "/dicomweb/studies", accept="application/dicom+json")
    assert status == 200, body[:300]
    studies = {s["0020000D"]["Value"][0] for s in json.loads(body)}
    assert studies == {ds.StudyInstanceUID for ds in files}


def healthy(root, context):
    with urllib.request.urlopen(root + "/healthz", timeout=5, context=context) as r:
        return r.status == 200


def test_plain_http_garbage_and_stalled_handshakes_are_refused(server):
    root, context, _ = server
    host, port = root.removeprefix("https://").split(":")
    # A client that connects and never speaks does not hold up the next one.
    stalled = socket.create_connection((host, int(port)), timeout=5)
    try:
        t0 = time.time()
        assert healthy(root, context)
        assert time.time() - t0 < 5
        # Plain HTTP on the TLS port gets no HTTP answer.
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                reply = s.recv(1024)
            except (ConnectionResetError, socket.timeout):
                reply = b""
            assert not reply.startswith(b"HTTP/"), reply[:80]
        # Random bytes and a handshake cut short.
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(bytes(range(256)) * 8)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        # A client that does not trust the certificate is refused by its own side.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(root + "/healthz", timeout=5,
                                   context=ssl.create_default_context())
    finally:
        stalled.close()
    assert healthy(root, context)
