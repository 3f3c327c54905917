"""Client app for stock Python SuperNodes joining a federation of Bedside site agents.

It trains the same model as the agent's built-in `LinearTrainer` (logistic regression,
full-batch gradient descent, float32 parameters) on the CSV named by the node config key
``data`` (columns: features..., label), so stock and Bedside nodes can share one run.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from bedside_fl import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES

app = ClientApp()


def _load(context: Context) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(str(context.node_config["data"]), delimiter=",", skiprows=1, ndmin=2)
    return data[:, :-1].astype(np.float64), data[:, -1].astype(np.float64)


def _loss_grad(w, b, x, y, mu, w0, b0):
    z = x @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    eps = 1e-12
    loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    r = (p - y) / len(y)
    gw = x.T @ r + mu * (w - w0)
    gb = np.sum(r) + mu * (b - b0)
    return loss, gw, gb


@app.train()
def train(msg: Message, context: Context) -> Message:
    x, y = _load(context)
    arrays = msg.content[ARRAYS]
    config = msg.content[CONFIG]
    w0 = arrays["w"].numpy().astype(np.float64)
    b0 = float(arrays["b"].numpy()[0])
    mu = float(config.get("proximal-mu", 0.0))
    lr = float(config["lr"])
    w, b = w0.copy(), b0
    loss = 0.0
    for _ in range(int(config["local-epochs"])):
        loss, gw, gb = _loss_grad(w, b, x, y, mu, w0, b0)
        w -= lr * gw
        b -= lr * gb
    out = {
        "w": Array(w.astype(np.float32)),
        "b": Array(np.array([b], dtype=np.float32)),
    }
    # Arrays this model does not train go back unchanged, or with Gaussian noise of
    # `frozen-noise` from this node's own stream (as the Rust LinearTrainer does).
    sd = float(config.get("frozen-noise", 0.0))
    rng = np.random.default_rng()
    out.update({k: v if sd == 0.0 else Array((v.numpy() + rng.normal(0.0, sd, v.numpy().shape)).astype(np.float32))
                for k, v in arrays.items() if k not in out})
    reply = RecordDict(
        {
            ARRAYS: ArrayRecord(out),
            METRICS: MetricRecord({NUM_EXAMPLES: int(len(y)), "train-loss": float(loss)}),
        }
    )
    return Message(content=reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    x, y = _load(context)
    arrays = msg.content[ARRAYS]
    w = arrays["w"].numpy().astype(np.float64)
    b = float(arrays["b"].numpy()[0])
    loss, _, _ = _loss_grad(w, b, x, y, 0.0, w, b)
    reply = RecordDict(
        {METRICS: MetricRecord({NUM_EXAMPLES: int(len(y)), "eval-loss": float(loss)})}
    )
    return Message(content=reply, reply_to=msg)
