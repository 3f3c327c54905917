"""Seconds per round and bytes on the wire: Bedside site agents beside stock Flower nodes.

Starts a flwr SuperLink on loopback, K sites (Bedside agents or stock `flower-supernode`
with tools/flower/bedside_fl's client app), and runs R FedAvg rounds of a model with
P float32 parameters (`frozen-params`, which every site returns with Gaussian noise of
`--frozen-noise` from its own stream, so that each reply is new content as a trained model's
is: returned unchanged, or changed alike at every site, a reply's objects would already be on
the SuperLink, which then does not ask for them, and uploads would measure less than the
model). Prints, per
kind of site: seconds per round (rounds 2..R; Flower's ServerApp polls for replies every
3 s, which is the floor), the SuperLink's own traffic count per site and round, and —
for agents — the agent's HTTP body bytes, each against the model size (4 P bytes).

    .venv/bin/python tools/flower/bench_federate.py --agent target/release/bedside \
        --sites 2 --rounds 4 --params 1000000 [--fp16] [--kinds bedside,flower]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
APP = ROOT / "tools" / "flower" / "bedside_fl"
VENV_BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(kind: str, args, tmp: pathlib.Path) -> dict:
    port = free_port()
    home = tmp / "home"
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = dict(os.environ, FLWR_HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    procs = []

    def spawn(cmd, log):
        p = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(p)
        return p

    try:
        spawn([str(VENV_BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port),
               "--disable-runtime-dependency-installation"], tmp / "superlink.log")
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        agents = []
        for i in range(args.sites):
            data = tmp / f"site{i}.csv"
            rng = np.random.default_rng(i)
            x = rng.normal(size=(200, 4))
            np.savetxt(data, np.c_[x, (x[:, 0] > 0)], delimiter=",", header="a,b,c,d,y", comments="")
            if kind == "flower":
                spawn([str(VENV_BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
                       "--port", str(free_port()), "--node-config", f'data="{data}"'], tmp / f"node{i}.log")
            else:
                folder = tmp / f"site{i}"
                folder.mkdir()
                (folder / "site.toml").write_text(
                    f'[superlink]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
                    f"[node]\nself_register = true\nexit_after_runs = 1\nkeep_egress_copies = false\n"
                    f"poll_interval_ms = {args.poll_ms}\n"
                    f'[allow]\nruns = ["logistic-demo"]\n[egress]\nfp16 = {str(args.fp16).lower()}\n'
                    f'[trainer]\nkind = "linear"\ndata = "{data}"\n'
                )
                agents.append(spawn([args.agent, "federate", "site", "--config", str(folder / "site.toml")],
                                    folder / "agent.log"))
        time.sleep(2)
        out = tmp / "out"
        cfg = {"out-dir": str(out), "min-nodes": args.sites, "num-server-rounds": args.rounds,
               "frozen-params": args.params, "frozen-noise": args.frozen_noise, "round-timeout": 600.0}
        subprocess.run([str(VENV_BIN / "flwr"), "run", str(APP), "local", "--run-config",
                        " ".join(f"{k}={json.dumps(v)}" for k, v in cfg.items())],
                       env=env, check=True, capture_output=True)
        deadline = time.time() + 1800
        while time.time() < deadline:
            path = out / "summary.json"
            if path.exists() and any(r.get("done") for r in json.loads(path.read_text())["rounds"]):
                break
            time.sleep(0.5)
        summary = json.loads((out / "summary.json").read_text())
        ls = subprocess.run([str(VENV_BIN / "flwr"), "ls", "local", "--format", "json"], env=env,
                            capture_output=True, text=True)
        rounds = [r for r in summary["rounds"] if "round" in r]
        times = [r["time"] for r in rounds]
        result = {
            "kind": kind,
            "sites": args.sites,
            "params": args.params,
            "rounds": len(rounds),
            "failures": sum(r["failures"] for r in rounds),
            "s_per_round": float(np.mean(np.diff(times))) if len(times) > 1 else None,
            "model_bytes": 4 * args.params,
        }
        try:
            runs = json.loads(ls.stdout)["runs"]
            run = runs[0]
            per = args.sites * len(rounds)
            traffic = run["network-traffic"]
            # As the SuperLink counts it: inbound = from the sites (pushed objects and
            # messages), outbound = to them.
            result["superlink_bytes_in_per_site_round"] = traffic["inbound-bytes"] / per
            result["superlink_bytes_out_per_site_round"] = traffic["outbound-bytes"] / per
        except (ValueError, KeyError, IndexError, TypeError):
            result["flwr_ls"] = ls.stdout[-500:]
        if agents:
            sent, received = [], []
            for i, p in enumerate(agents):
                p.wait(timeout=120)
                stats = json.loads((tmp / f"site{i}" / "agent.log").read_text().strip().splitlines()[-1])
                sent.append(stats["bytes_sent"] / len(rounds))
                received.append(stats["bytes_received"] / len(rounds))
            result["agent_upload_per_round"] = float(np.mean(sent))
            result["agent_download_per_round"] = float(np.mean(received))
            result["upload_vs_model"] = result["agent_upload_per_round"] / result["model_bytes"]
        return result
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default=str(ROOT / "target" / "release" / "bedside"))
    ap.add_argument("--sites", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--poll-ms", type=int, default=200)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--frozen-noise", type=float, default=1e-3,
                    help="noise each site adds to the parameters each round (0: return them unchanged)")
    ap.add_argument("--kinds", default="bedside,flower")
    args = ap.parse_args()
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(bench(kind, args, pathlib.Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
