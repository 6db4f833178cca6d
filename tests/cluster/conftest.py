"""Fixtures of the cluster tests: backplanes and nodes (real processes) on one Redis."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_support import REDIS_URL, Node, running_cluster, unique_prefix  # noqa: E402
from redis_keys import delete_prefix  # noqa: E402


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh key prefix on the shared Redis, its keys deleted afterwards."""
    name = unique_prefix()
    yield name
    delete_prefix(name)


@pytest.fixture
def make(prefix: str) -> Iterator[Any]:
    """``make(url=REDIS_URL, **options)``: a Redis backplane under ``prefix``, stopped afterwards."""
    from twisted.internet import reactor

    from pushpy.cluster.redis_backplane import RedisBackplane

    made: list[RedisBackplane] = []

    def factory(url: str = REDIS_URL, **options: Any) -> RedisBackplane:
        backplane = RedisBackplane(url, reactor=reactor, prefix=prefix, **options)
        made.append(backplane)
        return backplane

    yield factory
    for backplane in made:
        backplane.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nodes of one cluster (a fresh key prefix) on the shared Redis."""
    with running_cluster(tmp_path) as nodes:
        yield nodes
