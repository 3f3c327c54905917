"""Shared fixtures: the bedside binary and a small phantom cohort generated once per session."""

import os
import pathlib
import shutil
import subprocess

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
