"""A job array gives the same result as one run: the phantom cohort curated as three shards (by
`--shard`, by Slurm array variables, by Kubernetes indexed-Job variables) and merged has the same
outputs, byte for byte, and the same metadata rows as an unsharded run, and every input is handled
by exactly one shard."""

import collections
import csv
import hashlib
import json
import os
import subprocess

import pytest

SCHEDULER_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                  "JOB_COMPLETION_INDEX", "BEDSIDE_SHARD_COUNT")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULER_VARS}
    env.update(extra)
    return env


def curate(bedside, cohort, out, secret, *args, env=None):
    return subprocess.run(
        [str(bedside), "-q", "curate", str(cohort / "dicom"), "-o", str(out), "--secret-dir", str(secret), *args],
        capture_output=True, text=True, env=env or clean_env(),
    )


def outputs(out):
    """Every file under dicom/ and arrays/, relative path → SHA-256."""
    found = {}
    for sub in ("dicom", "arrays"):
        for p in sorted((out / sub).rglob("*")):
            if p.is_file():
                found[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def rows(path):
    return collections.Counter(json.dumps(r, sort_keys=True) for r in csv.DictReader(open(path, newline="")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bedside, cohort):
    base = tmp_path_factory.mktemp("shards")
    secret = base / "secret"
    whole = base / "whole"
    r = curate(bedside, cohort, whole, secret)
    assert r.returncode == 0, r.stderr
    sharded = base / "sharded"
    for i in range(3):
        r = curate(bedside, cohort, sharded, secret, "--shard", f"{i}/3")
        assert r.returncode == 0, r.stderr
    r = subprocess.run([str(bedside), "-q", "curate", "merge", str(sharded)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return whole, sharded, secret


def test_sharded_and_merged_equals_one_run(runs):
    whole, sharded, _ = runs
    a, b = outputs(whole), outputs(sharded)
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:5]
    differing = [k for k in a if a[k] != b[k]]
    assert not differing, differing[:5]
    assert rows(whole / "metadata.csv") == rows(sharded / "metadata.csv")


def test_every_input_is_handled_by_exactly_one_shard(runs, cohort):
    whole, sharded, _ = runs
    inputs = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (cohort / "dicom").rglob("*") if p.is_file()}
    per_shard = []
    for i in range(3):
        audit = [json.loads(l) for l in (sharded / f"audit.shard-{i}-of-3.jsonl").read_text().splitlines() if l]
        per_shard.append([a["input_sha256"] for a in audit])
        report = json.loads((sharded / f"report.shard-{i}-of-3.json").read_text())
        assert report["handled"] == len(audit) and report["inputs"] == len(inputs)
    seen = collections.Counter(s for shard in per_shard for s in shard)
    assert set(seen) == inputs
    assert all(n == 1 for n in seen.values()), [s for s, n in seen.items() if n > 1][:3]
    assert all(len(shard) > 0 for shard in per_shard)  # the hash spreads the cohort
    merged = [json.loads(l) for l in (sharded / "audit.jsonl").read_text().splitlines() if l]
    assert collections.Counter(a["input_sha256"] for a in merged) == seen
    assert all(a["status"] == "curated" for a in merged)


@pytest.mark.parametrize("scheduler", ["slurm", "kubernetes"])
def test_scheduler_variables_pick_the_same_shards(runs, bedside, cohort, tmp_path, scheduler):
    _, sharded, secret = runs
    out = tmp_path / "out"
    for i in range(3):
        if scheduler == "slurm":
            # Arrays are often numbered from 1 (`--array=1-3`).
            env = clean_env(SLURM_ARRAY_TASK_ID=str(i + 1), SLURM_ARRAY_TASK_COUNT="3", SLURM_ARRAY_TASK_MIN="1")
        else:
            env = clean_env(JOB_COMPLETION_INDEX=str(i), BEDSIDE_SHARD_COUNT="3")
        r = curate(bedside, cohort, out, secret, env=env)
        assert r.returncode == 0, r.stderr
        for table in (f"metadata.shard-{i}-of-3.csv",):
            assert rows(out / table) == rows(sharded / table), (scheduler, i)
        mine = {json.loads(l)["input_sha256"] for l in (out / f"audit.shard-{i}-of-3.jsonl").read_text().splitlines() if l}
        theirs = {json.loads(l)["input_sha256"] for l in (sharded / f"audit.shard-{i}-of-3.jsonl").read_text().splitlines() if l}
        assert mine == theirs, (scheduler, i)
    r = subprocess.run([str(bedside), "-q", "curate", "merge", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert rows(out / "metadata.csv") == rows(sharded / "metadata.csv")
    assert outputs(out) == outputs(sharded)


def test_kubernetes_index_without_a_count_is_refused(bedside, cohort, tmp_path):
    r = curate(bedside, cohort, tmp_path / "out", tmp_path / "s", env=clean_env(JOB_COMPLETION_INDEX="1"))
    assert r.returncode != 0 and "BEDSIDE_SHARD_COUNT" in r.stderr
    assert not (tmp_path / "out" / "dicom").exists()
