"""The dataset registry, seeded subsets, and failed downloads (for every dataset that downloads)."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
import torch

from mixkd.config import DataConfig
from mixkd.data import DATASETS, build_data, choose_subset
from mixkd.errors import ConfigError, DataError


def _all(loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return tuple(torch.cat([getattr(b, k) for b in batches]) for k in ("x", "y", "index"))


def test_registry_names() -> None:
    assert {"cifar10", "cifar100", "fashion-mnist", "imagefolder"} <= set(DATASETS.names())
    with pytest.raises(ConfigError, match="cifar10"):
        build_data(DataConfig(name="cifar-10"))


def test_choose_subset_edges() -> None:
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 9)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    per = choose_subset(labels, 3, True, g())
    assert torch.bincount(labels[per]).tolist() == [3, 2, 3]  # a short class gives what it has
    assert torch.equal(choose_subset(labels, 100, False, g()), torch.arange(16))
    assert torch.bincount(labels[choose_subset(labels, 6, False, g())]).tolist() == [2, 2, 2]


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for folders): what "nothing on disk changed" compares."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def bad_server(tmp_path: Path):
    """A real HTTP server on localhost whose files are not what torchvision expects (checksums fail)."""
    www = tmp_path / "www"
    www.mkdir()
    for n in ("cifar-10-python.tar.gz", "cifar-100-python.tar.gz", "train-images-idx3-ubyte.gz",
              "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (www / n).write_bytes(os.urandom(5000))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"  # closed when the socket is: connection refused


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion-mnist"])
@pytest.mark.parametrize("server", ["refused", "bad-files"])
@pytest.mark.parametrize("existing", [False, True])
def test_failed_download_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                               server: str, existing: bool, request) -> None:
    """A real download from localhost that fails (refused, or files whose checksum is wrong)."""
    from torchvision import datasets

    base = request.getfixturevalue("bad_server") if server == "bad-files" else _closed_port_url()
    if name == "fashion-mnist":
        monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [base])
    else:
        tv = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        monkeypatch.setattr(tv, "url", base + tv.filename)
    disk = tmp_path / "disk"
    disk.mkdir()
    root = disk / "a" / "b" / name  # parents that do not exist yet
    if existing:  # or a root that exists and holds the user's files
        root = disk / "mine"
        root.mkdir()
        (root / "notes.txt").write_text("keep me")
    before = _tree(disk)
    with pytest.raises(DataError, match="download failed") as e:
        build_data(DataConfig(name=name, root=str(root), download=True))
    assert str(root) in str(e.value) and "\n" not in str(e.value)
    assert _tree(disk) == before
