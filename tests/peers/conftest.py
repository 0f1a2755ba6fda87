"""Session fixtures of the conformance tier: the tools, one generated tree on tmpfs, one throwaway kubo repo."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.peers import peers
from tests.peers.trees import make_tree


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session")
def bins():
    return peers.require()


@pytest.fixture(scope="session")
def work():
    # tmpfs when there is one: the HAMT directories are 8,192 files, and file creation on this VM's disk is slow
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="ptolemy-peers-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tree(bins, work):
    return make_tree(work / "gen", seed=16)


@pytest.fixture(scope="session")
def kubo(bins, work):
    return peers.Kubo(bins, work / "ipfs-repo")
