"""The ground floor: atomic writes keep the old file on any error and leave no temporary file; CPU facts."""

import os
import stat
import sys

import pytest

from mixkd.io import atomic_write, cpu_info


def test_an_atomic_write_replaces_the_file_or_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write(path, lambda f: f.write(b"one"))
    assert path.read_bytes() == b"one"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600

    def half(f):
        f.write(b"tw")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half)
    assert path.read_bytes() == b"one" and sorted(p.name for p in path.parent.iterdir()) == ["f.json"]
    seen = []
    atomic_write(path, lambda f: f.write(b"two"), before_replace=lambda: seen.append(path.read_bytes()))
    assert seen == [b"one"] and path.read_bytes() == b"two"


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.uname().machine != "x86_64",
                    reason="reads an x86-64 Linux /proc/cpuinfo")
def test_cpu_info_names_the_cpu_and_its_flags():
    model, flags = cpu_info()
    assert model and {"sse2", "fpu"} <= flags
