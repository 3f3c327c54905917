"""`bedside federate site` inside real Flower federations (flwr 1.42 SuperLink on loopback).

Every test starts a stock `flower-superlink` from the venv on a free port with its own
FLWR_HOME, submits tools/flower/bedside_fl with `flwr run`, and checks the outcome
against NumPy: the aggregate of each round against a NumPy FedAvg of what the agents
sent (their egress copies), the agents' updates against a NumPy logistic-regression step.

Cost on a 2-core machine (Flower's own polling dominates): TLS+auth FedAvg ~45 s, mixed
federation ~40 s, 25M parameters ~40 s, killed agent ~50 s.

The agent binary is `bedside` (`federate site`); BEDSIDE_SITE_AGENT may name another
binary taking the same arguments (crates/bedside-federate/examples/site.rs builds one
without burn).
"""

from __future__ import annotations

import base64
import csv
import datetime
import json
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, bedside_binary, free_port

flwr = pytest.importorskip("flwr")

VENV_BIN = pathlib.Path(sys.executable).parent
APP = ROOT / "tools" / "flower" / "bedside_fl"


def agent_binary() -> list[str]:
    env = os.environ.get("BEDSIDE_SITE_AGENT")
    return [env] if env else [str(bedside_binary())]


def make_site_data(path: pathlib.Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.3 * rng.normal(size=rows) > 0).astype(float)
    np.savetxt(path, np.c_[x, y], delimiter=",", header="a,b,c,d,label", comments="", fmt="%.6f")


def numpy_train(csv: pathlib.Path, w0, b0, lr, epochs, mu=0.0):
    """Independent logistic-regression step (same maths as the agent's LinearTrainer)."""
    d = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
    x, y = d[:, :-1], d[:, -1]
    w, b = w0.astype(np.float64).copy(), float(b0)
    for _ in range(epochs):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        r = (p - y) / len(y)
        gw, gb = x.T @ r + mu * (w - w0), r.sum() + mu * (b - b0)
        w, b = w - lr * gw, b - lr * gb
    return w.astype(np.float32), np.float32(b), len(y)


def make_tls(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True)  # noqa: E731
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    run("req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", "2", "-subj", "/CN=bedside test CA", "-out", str(ca))
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    run("req", "-new", "-key", str(key), "-subj", "/CN=127.0.0.1", "-out", str(csr))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert))
    return {"ca": ca, "cert": cert, "key": key}


def make_client_cert(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A client certificate signed by the test CA of `make_tls` (same folder)."""
    openssl = shutil.which("openssl")
    key, csr, cert = folder / "client.key", folder / "client.csr", folder / "client.pem"
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True)  # noqa: E731
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    run("req", "-new", "-key", str(key), "-subj", "/CN=bedside site", "-out", str(csr))
    ext = folder / "client.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(folder / "ca.pem"), "-CAkey", str(folder / "ca.key"),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert))
    return cert, key


class MtlsProxy:
    """TLS terminator in front of a plain SuperLink that requires a client certificate from the
    test CA (the deployment the agent's `client_cert` is for); counts refused handshakes."""

    def __init__(self, target_port: int, tls: dict[str, pathlib.Path]):
        import threading

        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls["ca"]))
        self.ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.refused = 0
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(10)
                tls = self.ctx.wrap_socket(conn, server_side=True)
                tls.settimeout(None)
            except (ssl.SSLError, OSError):
                self.refused += 1
                conn.close()
                continue
            self.accepted += 1
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((tls, upstream), (upstream, tls)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def make_node_key(folder: pathlib.Path) -> pathlib.Path:
    """A P-256 PKCS#8 key made by openssl where the agent looks for it; returns the public PEM."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "node-key.pem"
    pem = subprocess.run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                         check=True, capture_output=True).stdout
    key.write_bytes(pem)
    key.chmod(0o600)
    pub = folder / "node-key.pub.pem"
    subprocess.run([openssl, "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    # `flwr supernode register` takes the OpenSSH form.
    from cryptography.hazmat.primitives import serialization

    ssh = folder / "node-key.pub"
    ssh.write_bytes(serialization.load_pem_public_key(pub.read_bytes()).public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return ssh


class Federation:
    """A SuperLink, its sites and runs, all torn down by `close`."""

    def __init__(self, tmp: pathlib.Path, *, tls: bool = False, auth: bool = False):
        self.tmp = tmp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tls = make_tls(tmp) if tls else None
        self.auth = auth
        self.procs: list[subprocess.Popen] = []
        self.agents: dict[str, subprocess.Popen] = {}
        self.run_ids: list[str] = []
        home = tmp / "flwr-home"
        home.mkdir()
        conn = f'address = "{self.address}"\n'
        conn += f'root-certificates = "{self.tls["ca"]}"\n' if self.tls else "insecure = true\n"
        (home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\n{conn}')
        self.env = dict(os.environ, FLWR_HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
        cmd = [str(VENV_BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
               "--disable-runtime-dependency-installation"]
        if self.tls:
            cmd += ["--ssl-ca-certfile", str(self.tls["ca"]), "--ssl-certfile", str(self.tls["cert"]),
                    "--ssl-keyfile", str(self.tls["key"])]
        else:
            cmd += ["--insecure"]
        if auth:
            cmd += ["--enable-supernode-auth"]
        self.link = self._spawn(cmd, tmp / "superlink.log")
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.link.poll() is None, (tmp / "superlink.log").read_text()[-3000:]
                time.sleep(0.3)
        time.sleep(1.0)

    def _spawn(self, cmd, log: pathlib.Path, **kw) -> subprocess.Popen:
        # Own process group: the SuperLink starts SuperExec and ServerApp processes.
        p = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def flwr(self, *args: str) -> str:
        r = subprocess.run([str(VENV_BIN / "flwr"), *args], env=self.env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def site(self, name: str, data: pathlib.Path, *, register: bool = False, runs=("logistic-demo",),
             egress: dict | None = None, link: str | None = None, stats: dict | None = None,
             **node) -> pathlib.Path:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        if register:
            pub = make_node_key(folder)
            self.flwr("supernode", "register", str(pub), "local")
        if link is None:
            link = f'address = "{self.address}"\n'
            link += f'ca = "{self.tls["ca"]}"\n' if self.tls else "insecure = true\n"
        node_cfg = {"self_register": not self.auth, "heartbeat_interval_s": 10, "poll_interval_ms": 200,
                    "exit_after_runs": 1} | node
        node_txt = "".join(f"{k} = {json.dumps(v)}\n" for k, v in node_cfg.items())
        egress_txt = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (egress or {}).items())
        stats_txt = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (stats or {}).items())
        (folder / "site.toml").write_text(
            f'site = "{name}"\n[superlink]\n{link}[node]\n{node_txt}'
            f"[allow]\nruns = {json.dumps(list(runs))}\n[egress]\n{egress_txt}"
            f"[stats]\n{stats_txt}"
            f'[trainer]\nkind = "linear"\ndata = "{data}"\n'
        )
        return folder

    def start_agent(self, name: str) -> subprocess.Popen:
        folder = self.tmp / name
        p = self._spawn([*agent_binary(), "federate", "site", "--config", str(folder / "site.toml")],
                        folder / "agent.log")
        self.agents[name] = p
        return p

    def start_stock_node(self, name: str, data: pathlib.Path) -> subprocess.Popen:
        cmd = [str(VENV_BIN / "flower-supernode"), "--insecure", "--superlink", self.address,
               "--port", str(free_port()), "--node-config", f'data="{data}"']
        return self._spawn(cmd, self.tmp / f"{name}.log")

    def run(self, **config) -> pathlib.Path:
        out = self.tmp / f"out-{len(self.procs)}"
        config = {"out-dir": str(out)} | config
        text = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        printed = self.flwr("run", str(APP), "local", "--run-config", text)
        found = re.search(r"run_id=(\d+)|run (\d+)|\b(\d{6,})\b", printed)
        if found:
            self.run_ids.append(next(g for g in found.groups() if g))
        return out

    def wait(self, out: pathlib.Path, until, timeout: float) -> dict:
        deadline = time.time() + timeout
        summary = {}
        while time.time() < deadline:
            path = out / "summary.json"
            if path.exists():
                summary = json.loads(path.read_text())
                if until(summary):
                    return summary
            time.sleep(0.5)
        logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in self.tmp.rglob("*.log"))
        for run_id in self.run_ids:
            r = subprocess.run([str(VENV_BIN / "flwr"), "log", run_id, "local", "--show"], env=self.env,
                               capture_output=True, text=True, timeout=60)
            logs += f"\n--- server app of run {run_id}\n{(r.stdout + r.stderr)[-4000:]}"
        raise AssertionError(f"timed out; summary={summary}{logs}")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def done(summary: dict) -> bool:
    return any(r.get("done") for r in summary.get("rounds", []))


def train_rounds(summary: dict) -> list[dict]:
    return [r for r in summary["rounds"] if "round" in r]


def egress(folder: pathlib.Path, rnd: int) -> tuple[np.ndarray, np.ndarray, int]:
    (copy,) = folder.glob(f"egress/*/round-{rnd}-train")
    metrics = json.loads((copy / "metrics.json").read_text())
    return np.load(copy / "arrays.w.npy"), np.load(copy / "arrays.b.npy"), metrics["num-examples"]


@pytest.fixture
def federation(tmp_path):
    feds = []

    def make(**kw) -> Federation:
        fed = Federation(tmp_path, **kw)
        feds.append(fed)
        return fed

    yield make
    for fed in feds:
        fed.close()


def test_three_agents_fedavg_over_tls_with_node_auth(federation, tmp_path):
    fed = federation(tls=True, auth=True)
    sites = {}
    for i, rows in enumerate((40, 70, 100)):
        data = tmp_path / f"site{i}.csv"
        make_site_data(data, rows, seed=i)
        sites[f"site{i}"] = (fed.site(f"site{i}", data, register=True), data)
        fed.start_agent(f"site{i}")
    # A block nobody trains, which every site returns with noise of its own (`frozen-noise`):
    # each reply is then new content for the SuperLink.
    out = fed.run(**{"min-nodes": 3, "num-server-rounds": 3, "lr": 0.5, "local-epochs": 2,
                     "frozen-params": 64, "frozen-noise": 0.01})
    summary = fed.wait(out, done, timeout=180)
    rounds = train_rounds(summary)
    assert [(r["round"], r["replies"], r["failures"]) for r in rounds] == [(1, 3, 0), (2, 3, 0), (3, 3, 0)]
    initial = np.random.default_rng(0).standard_normal(64, dtype=np.float32)
    previous = initial
    for rnd in (1, 2, 3):
        copies = [np.load(next(folder.glob(f"egress/*/round-{rnd}-train")) / "arrays.frozen.npy")
                  for folder, _ in sites.values()]
        # Each site's noise is its own (standard deviation 0.01 about the global block).
        for i, a in enumerate(copies):
            assert 0.005 < float(np.std(a - previous)) < 0.02
            assert all(not np.array_equal(a, b) for b in copies[i + 1:])
        previous = np.load(out / f"round-{rnd}" / "frozen.npy")

    w_global, b_global = np.zeros(4, np.float32), np.float32(0)
    for rnd in (1, 2, 3):
        sent = {name: egress(folder, rnd) for name, (folder, _) in sites.items()}
        # What each site sent is one local step from the previous global model.
        for name, (w, b, n) in sent.items():
            w_ref, b_ref, n_ref = numpy_train(sites[name][1], w_global, b_global, lr=0.5, epochs=2)
            assert n == n_ref
            np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(b, [b_ref], rtol=1e-5, atol=1e-6)
        # Flower's aggregate equals NumPy's FedAvg of what the sites sent.
        total = sum(n for _, _, n in sent.values())
        w_avg = sum(w.astype(np.float64) * n for w, _, n in sent.values()) / total
        b_avg = sum(b.astype(np.float64) * n for _, b, n in sent.values()) / total
        w_global = np.load(out / f"round-{rnd}" / "w.npy")
        b_global = np.load(out / f"round-{rnd}" / "b.npy")[0]
        np.testing.assert_allclose(w_global, w_avg, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b_global, b_avg[0], rtol=1e-6, atol=1e-7)

    # Agents leave after the run ended, with what they did.
    for name in sites:
        assert fed.agents[name].wait(timeout=60) == 0, (tmp_path / name / "agent.log").read_text()
        stats = json.loads((tmp_path / name / "agent.log").read_text().strip().splitlines()[-1])
        assert stats["replies"] == 3 and stats["refusals"] == 0 and stats["runs_finished"] == 1

    check_audit_log(sites["site0"][0])
    check_node_auth(fed, sites["site0"][0])


def check_audit_log(folder: pathlib.Path) -> None:
    """The chain links and every signature verify with the node's public key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = serialization.load_pem_public_key((folder / "node-key.pub.pem").read_bytes())
    prev = "0" * 64
    events = []
    for line in (folder / "audit.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert entry["prev"] == prev
        public.verify(base64.b64decode(entry["sig"]), entry["hash"].encode(), ec.ECDSA(hashes.SHA256()))
        prev = entry["hash"]
        events.append(entry["event"])
    assert events[0] == "activated" and events[-1] == "deactivated"
    assert events.count("instruction") == 3 and events.count("reply") == 3


def check_node_auth(fed: Federation, folder: pathlib.Path) -> None:
    """The SuperLink accepts the site key's signed headers and refuses forged or stale ones."""
    import httpx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from flwr.proto.fleet_pb2 import ActivateNodeRequest

    key = serialization.load_pem_private_key((folder / "node-key.pem").read_bytes(), None)
    pub = (folder / "node-key.pub.pem").read_bytes()
    body = ActivateNodeRequest(public_key=pub, heartbeat_interval=30).SerializeToString()

    def post(timestamp: str, signer=key) -> int:
        sig = signer.sign(timestamp.encode(), ec.ECDSA(hashes.SHA256()))
        headers = {"content-type": "application/protobuf", "flwr-timestamp": timestamp,
                   "flwr-public-key": base64.b64encode(pub).decode(),
                   "flwr-signature": base64.b64encode(sig).decode()}
        r = httpx.post(f"https://{fed.address}/v1/fleet/activate-node", content=body, headers=headers,
                       verify=ssl.create_default_context(cafile=str(fed.tls["ca"])))
        return r.status_code

    now = datetime.datetime.now(datetime.UTC)
    assert post(now.isoformat()) == 200
    assert post((now - datetime.timedelta(seconds=400)).isoformat()) == 401
    assert post(now.isoformat(), signer=ec.generate_private_key(ec.SECP256R1())) == 401


def test_mixed_federation_with_a_stock_flower_node(federation, tmp_path):
    """Stock node + two agents (one clipping and sending float16) + one site refusing the run."""
    fed = federation()
    for i in range(4):
        make_site_data(tmp_path / f"site{i}.csv", 50 + 10 * i, seed=10 + i)
    fed.start_stock_node("stock", tmp_path / "site0.csv")
    fed.site("site1", tmp_path / "site1.csv", egress={"clip_norm": 10.0, "noise_multiplier": 2.0, "delta": 1e-5})
    fed.site("site2", tmp_path / "site2.csv", egress={"clip_norm": 0.05, "fp16": True})
    fed.site("site3", tmp_path / "site3.csv", runs=["some-other-run"])
    for i in (1, 2, 3):
        fed.start_agent(f"site{i}")
    out = fed.run(**{"min-nodes": 4, "num-server-rounds": 2, "strategy": "fedprox", "proximal-mu": 0.1,
                     "lr": 0.5})
    summary = fed.wait(out, done, timeout=180)
    # The refusing site answers with an error: a failure each round, training goes on.
    assert [(r["sampled"], r["replies"], r["failures"]) for r in train_rounds(summary)] == [(4, 3, 1)] * 2
    for i in (1, 2, 3):
        assert fed.agents[f"site{i}"].wait(timeout=60) == 0
    stats = json.loads((tmp_path / "site3" / "agent.log").read_text().strip().splitlines()[-1])
    assert stats["replies"] == 0 and stats["refusals"] == 2
    assert not list((tmp_path / "site3").glob("egress/*"))
    # The clipping site sent float16 with an update norm of at most 0.05 (round 1 from zeros).
    (copy,) = (tmp_path / "site2").glob("egress/*/round-1-train")
    w, b = np.load(copy / "arrays.w.npy"), np.load(copy / "arrays.b.npy")
    assert w.dtype == np.float16 and b.dtype == np.float16
    norm = np.sqrt((w.astype(np.float64) ** 2).sum() + float(b[0]) ** 2)
    assert 0.045 < norm <= 0.05 * (1 + 2e-3)
    # The noising site accounts for its two releases (sensitivity 2 x clip: z = 2.0 / 2) in a
    # ledger and in each audited reply; the exact epsilon agrees with SciPy's normal CDF.
    from scipy.optimize import brentq
    from scipy.stats import norm as normal

    ledger = json.loads((tmp_path / "site1" / "privacy.json").read_text())
    assert ledger["releases"] == 2
    mu = math.sqrt(2) / 1.0
    exact = brentq(lambda e: normal.cdf(-e / mu + mu / 2) - math.exp(e) * normal.cdf(-e / mu - mu / 2) - 1e-5,
                   0.0, 100.0, xtol=1e-13)
    assert ledger["spent"]["epsilon_exact"] == pytest.approx(exact, rel=1e-6)
    assert ledger["spent"]["epsilon_rdp"] >= ledger["spent"]["epsilon_exact"]
    entries = [json.loads(line) for line in (tmp_path / "site1" / "audit.jsonl").read_text().splitlines()]
    releases = [e["egress"]["privacy"]["releases"] for e in entries
                if e["event"] == "reply" and (e.get("egress") or {}).get("privacy")]
    assert releases == [1, 2], releases


def test_25m_parameters_round_trip_intact(federation, tmp_path):
    fed = federation()
    make_site_data(tmp_path / "site.csv", 30, seed=3)
    for i in (0, 1):
        fed.site(f"site{i}", tmp_path / "site.csv")
        fed.start_agent(f"site{i}")
    n = 25_000_000
    out = fed.run(**{"min-nodes": 2, "num-server-rounds": 1, "frozen-params": n, "round-timeout": 600.0})
    fed.wait(out, done, timeout=600)
    expected = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    # Each site received the block (20 chunks of 5 MiB) and sent it back bit for bit.
    for i in (0, 1):
        (copy,) = (tmp_path / f"site{i}").glob("egress/*/round-1-train")
        assert np.array_equal(np.load(copy / "arrays.frozen.npy"), expected)
    assert np.array_equal(np.load(out / "final" / "frozen.npy"), expected)


def test_killed_agent_fails_the_round_and_training_continues(federation, tmp_path):
    fed = federation()
    for i in range(3):
        make_site_data(tmp_path / f"site{i}.csv", 40, seed=20 + i)
        fed.site(f"site{i}", tmp_path / f"site{i}.csv")
        fed.start_agent(f"site{i}")
    out = fed.run(**{"min-nodes": 2, "num-server-rounds": 6, "round-timeout": 10.0})
    # Killed as soon as its first reply is fully pushed (the audit line follows the last
    # object), so that the kill falls before its next instruction. A node killed between
    # pushing a reply message and its objects leaves Flower's server app waiting for the
    # object-push session to expire (OBJECT_PUSH_SESSION_TTL_SECONDS = 180 in flwr 1.42),
    # which the second wait allows for.
    audit = tmp_path / "site2" / "audit.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if audit.exists() and '"event":"reply"' in audit.read_text().replace(" ", ""):
            break
        time.sleep(0.02)
    fed.agents["site2"].send_signal(signal.SIGKILL)
    fed.wait(out, lambda s: any(r["failures"] for r in train_rounds(s)), timeout=260)
    # Restarted with its key, the site rejoins as the same node without help.
    fed.start_agent("site2")
    summary = fed.wait(out, done, timeout=240)
    rounds = train_rounds(summary)
    assert len(rounds) == 6
    failed = [r["round"] for r in rounds if r["failures"]]
    assert failed and all(rounds[i - 1]["replies"] == 2 for i in failed), rounds
    assert rounds[0]["replies"] == 3 and rounds[-1]["replies"] == 3, rounds
    assert set(rounds[0]["nodes"]) == set(rounds[-1]["nodes"])


def test_mtls_proxy_admits_only_agents_with_a_client_certificate(federation, tmp_path):
    """An mTLS proxy in front of the SuperLink: the agent with the CA's client certificate
    trains; one without is refused at the TLS handshake and never reaches the SuperLink."""
    fed = federation()
    tls = make_tls(tmp_path)
    cert, key = make_client_cert(tmp_path)
    proxy = MtlsProxy(fed.port, tls)
    try:
        make_site_data(tmp_path / "site.csv", 30, seed=5)
        base = f'address = "127.0.0.1:{proxy.port}"\nca = "{tls["ca"]}"\n'
        fed.site("with-cert", tmp_path / "site.csv",
                 link=base + f'client_cert = "{cert}"\nclient_key = "{key}"\n')
        fed.site("without-cert", tmp_path / "site.csv", link=base)
        fed.start_agent("with-cert")
        without = fed.start_agent("without-cert")
        out = fed.run(**{"min-nodes": 1, "num-server-rounds": 1})
        summary = fed.wait(out, done, timeout=120)
        assert [(r["replies"], r["failures"]) for r in train_rounds(summary)] == [(1, 0)]
        assert fed.agents["with-cert"].wait(timeout=60) == 0
        assert proxy.accepted >= 1 and proxy.refused >= 1
        # The refused agent says why, and never joined.
        deadline = time.time() + 30
        while without.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        log = (tmp_path / "without-cert" / "agent.log").read_text()
        assert "activate" in log or "register" in log, log[-2000:]
        assert not (tmp_path / "without-cert" / "egress").exists()
    finally:
        proxy.close()


def test_statistics_query_reports_each_site_and_withholds_small_ones(federation, tmp_path):
    fed = federation()
    rows = {"site0": 40, "site1": 70, "site2": 8}
    for i, (name, n) in enumerate(rows.items()):
        make_site_data(tmp_path / f"{name}.csv", n, seed=30 + i)
        fed.site(name, tmp_path / f"{name}.csv", stats={"min_count": 10})
        fed.start_agent(name)
    out = fed.run(**{"min-nodes": 3, "num-server-rounds": 1, "stats": True, "norm-from-stats": False})
    fed.wait(out, done, timeout=180)
    answers = json.loads((out / "stats.json").read_text())
    assert len(answers) == 3
    errors = [a for a in answers.values() if "error" in a]
    assert len(errors) == 1 and "fewer than 10" in errors[0]["error"]
    by_count = {int(a["num-examples"]): a for a in answers.values() if "error" not in a}
    assert sorted(by_count) == [40, 70]
    for name, n in rows.items():
        if n < 10:
            continue
        d = np.loadtxt(tmp_path / f"{name}.csv", delimiter=",", skiprows=1, ndmin=2)
        a = by_count[n]
        assert a["prevalence.label=1"] == pytest.approx(d[:, -1].mean(), abs=1e-12)
        for j in range(4):
            assert a[f"feature{j}.mean"] == pytest.approx(d[:, j].mean(), abs=1e-5)
            assert a[f"feature{j}.sd"] == pytest.approx(d[:, j].std(), abs=1e-5)
    html = (out / "stats.html").read_text()
    assert "prevalence.label=1" in html and "fewer than 10" in html


def test_simulate_federates_the_video_model_on_phantom_sites(tmp_path):
    """`bedside federate simulate` end to end at a tiny size: two phantom sites, two FedProx
    rounds of the video model (the proximal term is in each site's local training; the
    aggregate is FedAvg's), statistics, and a NumPy check of every array of round 1."""
    run = subprocess.run(
        [str(bedside_binary()), "federate", "simulate", "--dir", str(tmp_path / "fed"), "--sites", "2",
         "--patients", "30", "--test-patients", "16", "--rounds", "2", "--size", "16", "--compare",
         "--strategy", "fedprox", "--proximal-mu", "0.01", "--flower-bin", str(VENV_BIN),
         "--timeout-s", "900"],
        capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    fed = tmp_path / "fed"
    summary = json.loads((fed / "federation" / "summary.json").read_text())
    rounds = train_rounds(summary)
    assert [(r["replies"], r["failures"]) for r in rounds] == [(2, 0), (2, 0)]
    assert len(summary["evaluations"]) == 2
    # Round 1: both sites started from the same seeded weights; Flower's aggregate is the
    # examples-weighted mean of what each site sent, array by array.
    sent = []
    for site in sorted((fed / "sites").iterdir()):
        (copy,) = site.glob("egress/*/round-1-train")
        n = json.loads((copy / "metrics.json").read_text())["num-examples"]
        sent.append(({p.name[len("arrays."):-4]: np.load(p) for p in copy.glob("arrays.*.npy")}, n))
    names = set(sent[0][0])
    assert names == set(sent[1][0]) and len(names) > 20
    assert any("running_mean" in k for k in names)
    total = sum(n for _, n in sent)
    for name in names:
        avg = sum(a[name].astype(np.float64) * n for a, n in sent) / total
        np.testing.assert_allclose(np.load(fed / "federation" / "round-1" / f"{name}.npy"), avg,
                                   rtol=1e-5, atol=1e-6)
    # Statistics from both sites, and the pooled normalisation that was sent.
    answers = json.loads((fed / "federation" / "stats.json").read_text())
    assert len(answers) == 2
    assert all(a["intensity.n"] > 0 and len(a["frame_rate.counts"]) == 8 for a in answers.values())
    norm = json.loads((fed / "federation" / "normalization.json").read_text())
    n = [a["intensity.n"] for a in answers.values()]
    m = [a["intensity.mean"] for a in answers.values()]
    assert norm["mean"] == pytest.approx(sum(a * b for a, b in zip(n, m)) / sum(n), rel=1e-9)
    # The comparison covers every model on every test set; its AUROCs and paired differences
    # are those of the per-study scores it wrote (scikit-learn), inside their intervals.
    from sklearn.metrics import roc_auc_score

    with open(fed / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    with open(fed / "comparison-scores.csv", newline="") as f:
        scores = list(csv.DictReader(f))
    assert {(r["model"], r["test_set"]) for r in table} == {
        (m, t) for m in ["federated", "pooled", "site-0 only", "site-1 only", "federated, averaged statistics"]
        for t in ["site-0", "site-1", "all sites"]}
    # The federated model scored each site with BatchNorm statistics of that site (a pass
    # over its training studies, in the site's folder); with the averaged ones it scores
    # otherwise.
    for site in ("site-0", "site-1"):
        assert (fed / "sites" / site / "site-statistics" / "checkpoint" / "state.json").exists()
    own = [float(s["score"]) for s in scores if s["model"] == "federated"]
    averaged = [float(s["score"]) for s in scores if s["model"] == "federated, averaged statistics"]
    assert len(own) == len(averaged) and own != averaged
    patients = json.loads((fed / "cohort" / "cohort.json").read_text())["config"]["patients"]
    assert patients == 30 + 16
    auroc = {}
    for row in table:
        chosen = [s for s in scores if s["model"] == row["model"]
                  and row["test_set"] in (s["site"], "all sites")]
        y = [int(s["reduced_ef"]) for s in chosen]
        assert int(row["studies"]) == len(chosen) and int(row["positive"]) == sum(y)
        assert int(row["patients"]) == len({s["patient_key"] for s in chosen})
        if 0 < sum(y) < len(y):
            value = roc_auc_score(y, [float(s["score"]) for s in chosen])
            assert float(row["auroc"]) == pytest.approx(value, abs=1e-4)
            lower, upper = float(row["auroc_lower"]), float(row["auroc_upper"])
            # A percentile interval need not contain the point estimate exactly.
            assert 0 <= lower <= upper <= 1 and lower - 0.05 <= value <= upper + 0.05
            auroc[row["model"], row["test_set"]] = value
        else:
            assert row["auroc"] == ""
    for row in table:
        key, fed_key = (row["model"], row["test_set"]), ("federated", row["test_set"])
        if row["model"] != "federated" and key in auroc:
            assert float(row["federated_minus_model"]) == pytest.approx(
                auroc[fed_key] - auroc[key], abs=2e-4)
    md = (fed / "comparison.md").read_text()
    assert "Federated vs pooled" in md and "patient-level bootstrap" in md


def test_server_app_aggregates_only_the_metrics_every_site_sent():
    """A site that cannot compute a metric (AUROC of a one-class split) leaves it out; Flower
    refuses replies whose metric keys differ, so the server app drops such keys for the
    round instead of failing it."""
    sys.path.insert(0, str(APP))
    try:
        from bedside_fl.server_app import _common_metric_keys
    finally:
        sys.path.remove(str(APP))

    class Content:
        def __init__(self, metrics):
            self.metric_records = {"metrics": metrics}

    class Reply:
        def __init__(self, metrics, error=False):
            self.content, self.error = Content(metrics), error

        def has_error(self):
            return self.error

    a = Reply({"num-examples": 3, "val-auroc": 0.7, "val-loss": 0.5})
    b = Reply({"num-examples": 4, "val-loss": 0.6})
    failed = Reply({"something": 1.0}, error=True)
    assert _common_metric_keys([a, b, failed]) == ["val-auroc"]
    assert a.content.metric_records["metrics"] == {"num-examples": 3, "val-loss": 0.5}
    assert b.content.metric_records["metrics"] == {"num-examples": 4, "val-loss": 0.6}
    assert _common_metric_keys([]) == []
