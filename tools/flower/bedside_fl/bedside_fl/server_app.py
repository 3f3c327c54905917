"""Server app for `flwr run`: FedAvg or FedProx over Bedside site agents.

Instructions carry ``arrays`` (the global model) and ``config`` (``bedside-run``,
``server-round``, ``local-epochs``, ``lr`` and, for FedProx, ``proximal-mu``); replies carry
``arrays`` and ``metrics`` with ``num-examples``. When ``out-dir`` is set, the aggregate of
every round is written there as ``round-<n>/<key>.npy`` plus ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from bedside_fl import ARRAYS, CONFIG, NUM_EXAMPLES

app = ServerApp()


class _Recording:
    """Wraps a strategy's aggregate_train to write each round's aggregate and failures."""

    def __init__(self, strategy, out_dir: Path | None):
        self.strategy = strategy
        self.out_dir = out_dir
        self.rounds: list[dict] = []
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
            self.rounds.append(entry)
            self._write()
            return arrays, metrics

        strategy.aggregate_train = aggregate_train

    def _write(self) -> None:
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / "summary.json.tmp"
        tmp.write_text(json.dumps({"rounds": self.rounds}, indent=1))
        tmp.replace(self.out_dir / "summary.json")


def _items(arrays: ArrayRecord):
    for key, value in arrays.items():
        yield key, value.numpy()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    num_features = int(cfg["num-features"])
    min_nodes = int(cfg["min-nodes"])
    out_dir = Path(str(cfg["out-dir"])) if str(cfg["out-dir"]) else None
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

    initial = ArrayRecord(
        {
            "w": Array(np.zeros(num_features, dtype=np.float32)),
            "b": Array(np.zeros(1, dtype=np.float32)),
        }
    )
    frozen = int(cfg["frozen-params"])
    if frozen:
        # A large block the sites return unchanged: checks multi-chunk transfer both ways.
        block = np.random.default_rng(0).standard_normal(frozen, dtype=np.float32)
        initial["frozen"] = Array(block)
    train_config = ConfigRecord(
        {
            "bedside-run": str(cfg["bedside-run"]),
            "local-epochs": int(cfg["local-epochs"]),
            "lr": float(cfg["lr"]),
        }
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        train_config=train_config,
    )
    if out_dir is not None:
        final = out_dir / "final"
        final.mkdir(parents=True, exist_ok=True)
        for key, value in _items(result.arrays):
            np.save(final / f"{key}.npy", value)
        recorder.rounds.append({"done": True, "time": time.time()})
        recorder._write()
