"""The launcher tests' real Slurm: one single-node cluster for the session (skipped, with the reason, where
Slurm can be neither found nor installed)."""

from __future__ import annotations

import os

import pytest

from tests.sweeps.slurm_cluster import SlurmCluster, missing_reason


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running munged + slurmctld + slurmd on this host; SLURM_CONF points the client commands at it."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
