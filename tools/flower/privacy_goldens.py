"""Regenerate the privacy-accounting goldens of bedside-federate.

Needs opacus (with torch) and scipy, only when regenerating:

    python tools/flower/privacy_goldens.py > crates/bedside-federate/tests/fixtures/privacy_goldens.json

For each (noise multiplier z, releases k, delta): Opacus's RDPAccountant with sample rate 1.0
(the Gaussian mechanism released k times; Opacus's default orders), and the exact epsilon of
k composed Gaussian mechanisms (mu-GDP with mu = sqrt(k)/z; Dong, Roth & Su 2019) solved with
SciPy's normal CDF and brentq.
"""
import json
import math

import opacus
from opacus.accountants import RDPAccountant
from scipy.optimize import brentq
from scipy.stats import norm


def exact_epsilon(z, k, delta):
    mu = math.sqrt(k) / z

    def gap(eps):
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    if gap(0.0) <= 0:
        return 0.0
    hi = 1.0
    while gap(hi) > 0:
        hi *= 2
    return brentq(gap, 0.0, hi, xtol=1e-14, rtol=1e-14, maxiter=500)


def main():
    cases = []
    for z, k, delta in [(0.5, 1, 1e-5), (1.0, 1, 1e-5), (1.0, 10, 1e-5), (2.0, 50, 1e-5),
                        (0.8, 100, 1e-6), (4.0, 1000, 1e-5), (1.5, 3, 1e-3)]:
        acc = RDPAccountant()
        acc.history = [(z, 1.0, k)]
        cases.append({"noise_multiplier": z, "steps": k, "delta": delta,
                      "opacus_epsilon": acc.get_epsilon(delta),
                      "exact_epsilon": exact_epsilon(z, k, delta)})
    print(json.dumps({"opacus": opacus.__version__, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
