"""Fixtures of the cluster tests: nodes in subprocesses on one Redis (real processes)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_support import Node, unique_prefix  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nodes of one cluster (a fresh key prefix) on the shared Redis."""
    prefix = unique_prefix()
    nodes = [Node(tmp_path, prefix) for _ in range(3)]
    try:
        for node in nodes:
            node.wait()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        _forget(prefix)


def _forget(prefix: str) -> None:
    """Delete the keys of one test's cluster (never anything else)."""
    import redis_keys

    redis_keys.delete_prefix(prefix)
