"""Fixtures of the cluster tests: nodes in subprocesses on one Redis (real processes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_support import Node, running_cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nodes of one cluster (a fresh key prefix) on the shared Redis."""
    with running_cluster(tmp_path) as nodes:
        yield nodes
