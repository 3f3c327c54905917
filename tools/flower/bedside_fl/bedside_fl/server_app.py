"""Server app for `flwr run`: FedAvg or FedProx over Bedside site agents.

Instructions carry ``arrays`` (the global model) and ``config`` (``bedside-run``,
``server-round``, ``local-epochs``, ``lr`` and, for FedProx, ``proximal-mu``); replies carry
``arrays`` and ``metrics`` with ``num-examples``. When ``out-dir`` is set, the aggregate of
every round is written there as ``round-<n>/<key>.npy`` plus ``summary.json``.

``model = "video"`` starts from no arrays: every site initialises the experiment's model
from its seed, so all start from the same weights. ``stats = true`` first sends a ``query``
to every node for its data-quality statistics, writes them side by side to
``stats.json`` and ``stats.html`` in ``out-dir`` and, with ``norm-from-stats``, sends the
pooled intensity mean and standard deviation as ``norm-mean``/``norm-std`` so that every
site normalises its input alike.
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from bedside_fl import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES

app = ServerApp()


def _common_metric_keys(replies: list) -> list[str]:
    """Keeps in every reply's metrics only the keys that all replies carry; returns the others.

    A site leaves out a metric it cannot compute (AUROC of a split with one class), and
    Flower's strategies refuse to aggregate replies whose metric keys differ: such a metric
    is left out of that round's aggregate instead of failing the round.
    """
    records = [rec for r in replies if not r.has_error() for rec in r.content.metric_records.values()]
    if not records:
        return []
    common = set.intersection(*(set(rec.keys()) for rec in records))
    dropped = sorted({k for rec in records for k in rec.keys()} - common)
    for rec in records:
        for key in dropped:
            if key in rec:
                del rec[key]
    return dropped


class _Recording:
    """Wraps a strategy's aggregate_train to write each round's aggregate and failures."""

    def __init__(self, strategy, out_dir: Path | None):
        self.strategy = strategy
        self.out_dir = out_dir
        self.rounds: list[dict] = []
        self.evaluations: list[dict] = []
        self.sampled: dict[int, int] = {}
        inner = strategy.aggregate_train
        inner_configure = strategy.configure_train

        def configure_train(server_round, *args, **kwargs):
            messages = list(inner_configure(server_round, *args, **kwargs))
            self.sampled[server_round] = len(messages)
            return messages

        strategy.configure_train = configure_train

        def aggregate_train(server_round, replies):
            replies = list(replies)
            ok = [r for r in replies if not r.has_error()]
            dropped = _common_metric_keys(replies)
            arrays, metrics = inner(server_round, replies)
            entry = {
                "round": server_round,
                "replies": len(ok),
                # A reply that never came (timeout) is a failure too.
                "sampled": self.sampled.get(server_round, len(replies)),
                "failures": self.sampled.get(server_round, len(replies)) - len(ok),
                "nodes": sorted(int(r.metadata.src_node_id) for r in ok),
                "time": time.time(),
            }
            if arrays is not None and self.out_dir is not None:
                folder = self.out_dir / f"round-{server_round}"
                folder.mkdir(parents=True, exist_ok=True)
                for key, value in _items(arrays):
                    np.save(folder / f"{key}.npy", value)
            if metrics is not None:
                entry["metrics"] = {k: v for k, v in metrics.items()}
            if dropped:
                entry["metrics-not-from-every-site"] = dropped
            self.rounds.append(entry)
            self._write()
            return arrays, metrics

        strategy.aggregate_train = aggregate_train
        inner_evaluate = strategy.aggregate_evaluate

        def aggregate_evaluate(server_round, replies):
            replies = list(replies)
            per_node = {}
            for r in replies:
                if not r.has_error() and METRICS in r.content.metric_records:
                    per_node[str(r.metadata.src_node_id)] = dict(r.content.metric_records[METRICS])
            dropped = _common_metric_keys(replies)
            metrics = inner_evaluate(server_round, replies)
            entry = {"round": server_round, "metrics": dict(metrics or {}), "nodes": per_node}
            if dropped:
                entry["metrics-not-from-every-site"] = dropped
            self.evaluations.append(entry)
            self._write()
            return metrics

        strategy.aggregate_evaluate = aggregate_evaluate

    def _write(self) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps({"rounds": self.rounds, "evaluations": self.evaluations}, indent=1))
        tmp.replace(self.out_dir / "summary.json")


def _items(arrays: ArrayRecord):
    for key, value in arrays.items():
        yield key, value.numpy()


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.time() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count or time.time() > deadline:
            return nodes
        time.sleep(0.5)


def query_statistics(grid: Grid, run: str, min_nodes: int, timeout: float) -> dict:
    """Asks every node for its data-quality statistics; returns node id -> metrics or error."""
    nodes = _wait_for_nodes(grid, min_nodes, timeout)
    messages = [
        Message(content=RecordDict({CONFIG: ConfigRecord({"bedside-run": run, "bedside-query": "statistics"})}),
                dst_node_id=node, message_type="query")
        for node in nodes
    ]
    answers = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        node = str(reply.metadata.src_node_id)
        if reply.has_error():
            answers[node] = {"error": reply.error.reason}
        else:
            answers[node] = {k: v for k, v in reply.content.metric_records[METRICS].items()}
    return answers


def pooled_intensity(answers: dict) -> tuple[float, float] | None:
    """Pooled mean and standard deviation of the sites' intensity moments."""
    n = s = s2 = 0.0
    for a in answers.values():
        if "intensity.n" not in a or "intensity.mean" not in a:
            continue
        k, m, sd = float(a["intensity.n"]), float(a["intensity.mean"]), float(a["intensity.sd"])
        n += k
        s += k * m
        s2 += k * (sd * sd + m * m)
    if n == 0:
        return None
    mean = s / n
    return mean, math.sqrt(max(s2 / n - mean * mean, 0.0))


def write_statistics(out_dir: Path, answers: dict) -> None:
    """`stats.json` and a side-by-side HTML table (one column per site)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stats.json").write_text(json.dumps(answers, indent=1))
    nodes = sorted(answers)
    keys = sorted({k for a in answers.values() for k in a if not k.endswith(".edges")})

    def cell(a, k):
        v = a.get(k, "")
        if isinstance(v, list):
            return " ".join(f"{x:g}" for x in v)
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    rows = "".join(
        f"<tr><th>{html.escape(k)}</th>" + "".join(f"<td>{cell(answers[n], k)}</td>" for n in nodes) + "</tr>"
        for k in keys
    )
    edges = sorted({k for a in answers.values() for k in a if k.endswith(".edges")})
    notes = "".join(
        f"<li>{html.escape(k)}: {cell(next(a for a in answers.values() if k in a), k)}</li>" for k in edges
    )
    head = "".join(f"<th>node {html.escape(n)}</th>" for n in nodes)
    (out_dir / "stats.html").write_text(
        "<!doctype html><meta charset=utf-8><title>Federated data quality</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px;text-align:right}th{text-align:left}</style>"
        "<h1>Federated data quality</h1><p>Each site computed these on its own data; counts below the "
        "site's minimum cell size are released as 0, and a site below its minimum count answers nothing.</p>"
        f"<table><tr><th></th>{head}</tr>{rows}</table><h2>Bin edges</h2><ul>{notes}</ul>"
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    num_features = int(cfg["num-features"])
    min_nodes = int(cfg["min-nodes"])
    out_dir = Path(str(cfg["out-dir"])) if str(cfg["out-dir"]) else None
    model = str(cfg.get("model", "linear")).lower()
    norm = None
    if bool(cfg.get("stats", False)):
        answers = query_statistics(grid, str(cfg["bedside-run"]), min_nodes, float(cfg["round-timeout"]))
        if out_dir is not None:
            write_statistics(out_dir, answers)
        if bool(cfg.get("norm-from-stats", True)):
            norm = pooled_intensity(answers)
            if norm is not None and out_dir is not None:
                (out_dir / "normalization.json").write_text(json.dumps({"mean": norm[0], "std": norm[1]}))
    common = dict(
        fraction_train=1.0,
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
        weighted_by_key=NUM_EXAMPLES,
        arrayrecord_key=ARRAYS,
        configrecord_key=CONFIG,
    )
    name = str(cfg["strategy"]).lower()
    if name == "fedavg":
        strategy = FedAvg(**common)
    elif name == "fedprox":
        strategy = FedProx(**common, proximal_mu=float(cfg["proximal-mu"]))
    else:
        raise ValueError(f"unknown strategy {name!r} (fedavg, fedprox)")
    recorder = _Recording(strategy, out_dir)

    if model == "video":
        initial = ArrayRecord()
    elif model == "linear":
        initial = ArrayRecord(
            {
                "w": Array(np.zeros(num_features, dtype=np.float32)),
                "b": Array(np.zeros(1, dtype=np.float32)),
            }
        )
    else:
        raise ValueError(f"unknown model {model!r} (linear, video)")
    frozen = int(cfg["frozen-params"])
    if frozen:
        # A large block the sites return unchanged: checks multi-chunk transfer both ways.
        block = np.random.default_rng(0).standard_normal(frozen, dtype=np.float32)
        initial["frozen"] = Array(block)
    settings = {
        "bedside-run": str(cfg["bedside-run"]),
        "local-epochs": int(cfg["local-epochs"]),
        "lr": float(cfg["lr"]),
    }
    if norm is not None:
        settings["norm-mean"], settings["norm-std"] = norm
    if frozen and float(cfg.get("frozen-noise", 0.0)) > 0.0:
        settings["frozen-noise"] = float(cfg["frozen-noise"])
    train_config = ConfigRecord(settings)
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        train_config=train_config,
        evaluate_config=ConfigRecord(dict(settings)),
    )
    if out_dir is not None:
        final = out_dir / "final"
        final.mkdir(parents=True, exist_ok=True)
        for key, value in _items(result.arrays):
            np.save(final / f"{key}.npy", value)
        recorder.rounds.append({"done": True, "time": time.time()})
        recorder._write()
