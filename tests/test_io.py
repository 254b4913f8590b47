"""The ground floor: atomic writes keep the old file on any error and leave no temporary file; file locks have
one holder, name it, and die with it; CPU facts."""

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from mixkd.io import FileLock, LockHeld, atomic_write, cpu_info, lock_owner


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


def test_a_file_lock_has_one_holder_who_names_itself(tmp_path):
    path = tmp_path / "lock"
    assert lock_owner(path) is None  # no file: nobody holds it
    first, second = FileLock(path), FileLock(path)
    first.acquire(wait=False)
    assert first.held and lock_owner(path) == ""  # held, nothing written yet
    first.write_owner("1234\n")
    with pytest.raises(LockHeld) as e:
        second.acquire(wait=False)  # another open of the file, even in this process
    assert e.value.owner == "1234\n" and e.value.path == path and not second.held
    assert isinstance(e.value, BlockingIOError) and lock_owner(path) == "1234\n"
    first.release()
    first.release()  # releasing twice is nothing
    assert lock_owner(path) is None
    second.acquire(wait=False)
    second.write_owner("5")
    assert path.read_text() == "5"  # the owner line replaces the previous one
    second.release()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_file_lock_waits_for_its_holder_as_a_context_manager(tmp_path):
    path, order = tmp_path / "lock", []
    holder = FileLock(path)
    holder.acquire()

    def later():
        time.sleep(0.3)
        order.append("released")
        holder.release()

    threading.Thread(target=later).start()
    with FileLock(path) as lock:
        order.append("acquired")
        assert lock.held
    assert order == ["released", "acquired"] and not lock.held
    with pytest.raises(RuntimeError, match="without holding the lock"):
        lock.write_owner("x")


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "lock"
    code = ("import sys, time; from mixkd.io import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "lock.write_owner('child'); print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "held\n"
        assert lock_owner(path) == "child"
        with pytest.raises(LockHeld):
            FileLock(path).acquire(wait=False)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert lock_owner(path) is None
    with FileLock(path):
        pass


def test_a_lock_file_that_cannot_be_created_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileLock(tmp_path / "missing" / "lock").acquire(wait=False)
