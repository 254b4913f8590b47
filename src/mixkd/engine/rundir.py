"""A run is a directory: config.yaml, metrics.jsonl, summary.json, last.pt / best.pt, plots.

This module is the one place that knows what a run folder holds and which states a stopped or killed
process can leave it in:

- `inspect_run` classifies a folder (new, foreign, started, resumable, finished; locked by a writer);
- `RunLock` makes one process the only writer of a run (an fcntl lock on the folder's `.mixkd-run` marker);
- `config_differences` compares the config on disk with the one asked for (resume, quickstart, sweep);
- `RunDir` writes the files so that any kill leaves a folder that `--resume` continues.
"""

from __future__ import annotations

import json
import os
import signal
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import yaml

from mixkd.engine.signals import uninterrupted
from mixkd.errors import CheckpointError, ConfigError, MixkdError, UnreadableCheckpoint
from mixkd.io import FileLock, LockHeld, atomic_write, lock_owner

CHECKPOINT_FORMAT = "mixkd"
CHECKPOINT_VERSION = 1  # raised when a checkpoint's contents change in a way older mixkd cannot read
MARKER = ".mixkd-run"  # marks a folder as a mixkd run; its fcntl lock marks the run's one writer

# Files a run writes (their temporary files are `.NAME.*.tmp` until renamed over NAME).
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "teacher.json", "last.pt", "best.pt",
             "config-changes.jsonl")

# Config keys that cannot change a run's numbers, ignored whenever a saved config is compared with an asked one:
#   runtime.tensorboard  only whether TensorBoard event files are written;
#   teacher.cache_dir    where the teacher cache lives, not what it holds;
#   teacher.shared_cache_dir  where an `auto` cache is shared with other runs: `auto` caches only a teacher whose
#                        logits do not depend on the batch, so a shared disk cache, one in memory and none give
#                        the same numbers (and a sweep point run before the key existed is reused);
#   data.workers         worker-loader batches are seeded per row, so they do not depend on the worker count
#                        (tests/data/test_loaders.py), and the device loader ignores it;
#   data.download        whether missing data may be fetched, not which data is used;
#   name                 a label (reports group runs ignoring it).
# Every other key can change the numbers, including runtime.threads, device, precision, channels_last and
# compile (they change floating-point reduction order or kernels) and teacher.cache (an explicit memory/disk cache
# matches a run without one only to float rounding when the teacher is not batch independent, docs/speed.md).
RESULT_NEUTRAL = frozenset({"runtime.tensorboard", "teacher.cache_dir", "teacher.shared_cache_dir", "data.workers",
                            "data.download", "name"})

# Keys that `--resume RUN KEY=VALUE` may change: the learning rate (the way out of a loss that became NaN) and
# how the remaining epochs are computed. Everything else is fixed by what the checkpoint holds.
RESUME_ADJUSTABLE = frozenset({"optim.lr", "runtime.device", "runtime.precision", "runtime.channels_last",
                               "runtime.compile", "runtime.threads", "teacher.precision", "teacher.cache",
                               "teacher.compile"})


# --------------------------------------------------------------------------- writing files


class DiskWriteError(MixkdError):
    """A file of the run could not be written (disk full, quota, I/O error); the previous file is intact."""


_hook_counts: Counter[str] = Counter()


def signal_point(event: str) -> None:
    """Test hook: deliver a real signal to this process at an exact point of a run's write sequence.

    With MIXKD_TEST_SIGNAL_AT="EVENT[#N]=SIGNAME" (e.g. "after:metrics.jsonl#1=SIGKILL") the process sends
    itself SIGNAME the Nth time it reaches EVENT ("during:NAME" = a write into NAME's temporary file,
    "before:NAME" = the temporary file is complete but not yet renamed, "after:NAME" = NAME is written).
    Tests use it to kill or stop a run at an exact point between (or inside) two writes.
    """
    spec = os.environ.get("MIXKD_TEST_SIGNAL_AT")
    if not spec:
        return
    _hook_counts[event] += 1
    where, _, signame = spec.rpartition("=")
    name, _, nth = where.partition("#")
    if name == event and _hook_counts[event] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, signame))


class _RecordingFile:
    """A binary file whose write errors are remembered (torch.save turns them into opaque RuntimeErrors)."""

    def __init__(self, f: Any, name: str) -> None:
        self.f, self.name, self.error = f, name, None

    def write(self, data: bytes) -> int:
        signal_point(f"during:{self.name}")
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def _write_error(path: Path, e: OSError, existed: bool) -> DiskWriteError:
    reason = e.strerror or str(e)
    kept = f"the previous {path.name} is intact" if existed else f"no {path.name} was written"
    return DiskWriteError(f"cannot write {path}: {reason}; {kept}")


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder and rename it over `path`.

    A write error (disk full, quota) becomes one DiskWriteError line; `path` keeps its previous content.
    A stop asked by a signal meanwhile takes effect once the file is complete.
    """
    with uninterrupted():
        _atomic_write(path, write)


def _atomic_write(path: Path, write: Any) -> None:
    existed = path.exists()
    recorder: list[_RecordingFile] = []

    def recorded(raw) -> None:
        recorder.append(_RecordingFile(raw, path.name))
        write(recorder[0])

    try:
        atomic_write(path, recorded, before_replace=lambda: signal_point(f"before:{path.name}"))
    except BaseException as e:
        cause = recorder[0].error if recorder and recorder[0].error is not None else e
        if isinstance(cause, OSError):
            raise _write_error(path, cause, existed) from None
        raise
    signal_point(f"after:{path.name}")


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomically save a mixkd checkpoint."""
    atomic_write_bytes(path, lambda f: torch.save(
        {**state, "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION}, f))


def damage(path: Path) -> str | None:
    """Why `path` is provably torn or damaged (empty, zeroed, a cut-short zip, a member failing its CRC), or None.

    torch.save writes a zip archive; anything else that fails to load (a complete archive of a newer torch, a
    foreign file, a file this user may not read) is not damage, and a resume must not replace it."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            if not head.strip(b"\0"):
                return "empty" if not head else "zeroed"
            if not head.startswith(b"PK\x03\x04"):
                return None  # not a zip archive at all: not something mixkd wrote and a kill cut short
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except zipfile.BadZipFile:
        return "a cut-short zip archive"
    except (zlib.error, EOFError):
        return "an archive member cannot be read back"
    except OSError:
        return None
    return f"archive member {bad} fails its CRC" if bad is not None else None


def load_checkpoint(path: Path) -> dict:
    """Load a mixkd checkpoint; a missing, damaged or unreadable file is one clear line.

    A damaged file raises CheckpointError; a complete file this installation cannot read (written by a newer
    torch or mixkd, or not a mixkd checkpoint) raises UnreadableCheckpoint, which callers must never overwrite."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; was the run started with this --out folder?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated zips and pickles
        why = damage(path)
        if why is not None:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({why}; {type(e).__name__})") from None
        if not _starts_as_zip(path):
            raise UnreadableCheckpoint(f"{path} is not a mixkd training checkpoint (not a PyTorch zip archive); "
                                       "mixkd keeps it: move it out of the folder to start the run over") from None
        raise UnreadableCheckpoint(
            f"checkpoint {path} cannot be read by this installation (torch {torch.__version__}: "
            f"{_first_line(e)}); the file is complete, so mixkd keeps it: continue with the torch and mixkd "
            "that wrote it, or move it out of the folder to start the run over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UnreadableCheckpoint(f"{path} is not a mixkd training checkpoint (no 'format: mixkd' entry); "
                                   "mixkd keeps it: move it out of the folder to start the run over")
    version = state.get("format_version", 1)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise UnreadableCheckpoint(f"checkpoint {path} has format version {version}, newer than this mixkd reads "
                                   f"({CHECKPOINT_VERSION}); upgrade mixkd to continue the run (the file is kept)")
    return state


def _starts_as_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return True  # unreadable for another reason (permissions): the loader's own words say more


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


# --------------------------------------------------------------------------- what a folder holds


class RunState(str, Enum):
    """What a folder holds, as far as starting or continuing a run in it goes."""

    NEW = "new"  # missing or empty: a run can start here
    FOREIGN = "foreign"  # not empty and not a mixkd run: mixkd never writes into it
    STARTED = "started"  # a run stopped before its first checkpoint: --resume restarts it from epoch 1
    RESUMABLE = "resumable"  # a run with a checkpoint and no summary: --resume continues it
    FINISHED = "finished"  # summary.json: nothing left to do


@dataclass(frozen=True)
class RunInfo:
    """A folder's state, the pid of the process writing it (if any) and a few words about it."""

    path: Path
    state: RunState
    holder: int | None = None
    detail: str = ""

    @property
    def is_run(self) -> bool:
        """Whether the folder holds a mixkd run (started, resumable or finished)."""
        return self.state in (RunState.STARTED, RunState.RESUMABLE, RunState.FINISHED)


def _is_our_file(name: str) -> bool:
    return name in (MARKER, *RUN_FILES) or name == "tensorboard" or (
        name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in RUN_FILES))


def inspect_run(path: str | Path) -> RunInfo:
    """Classify a folder without writing anything."""
    path = Path(path)
    if not path.is_dir():
        return RunInfo(path, RunState.NEW, detail="it does not exist")
    names = sorted(p.name for p in path.iterdir())
    holder = _lock_holder(path / MARKER)
    has_config = (path / "config.yaml").is_file()
    marked = MARKER in names
    legacy = has_config and any(n in names for n in ("metrics.jsonl", "last.pt", "summary.json"))
    if not (marked or legacy) or not has_config:
        others = [n for n in names if n != MARKER]
        if not others or (marked and all(_is_our_file(n) for n in others)):
            return RunInfo(path, RunState.NEW, holder, "it is empty")
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return RunInfo(path, RunState.FOREIGN, holder, f"it holds {shown}")
    epochs = len([r for r in RunDir(path).read_metrics() if r.get("stage") != "init"])
    if _readable_json(path / "summary.json"):
        return RunInfo(path, RunState.FINISHED, holder, f"{epochs} epochs")
    if (path / "last.pt").is_file() or (path / "best.pt").is_file():
        return RunInfo(path, RunState.RESUMABLE, holder, f"stopped after epoch {epochs}")
    return RunInfo(path, RunState.STARTED, holder, "stopped before its first checkpoint")


def _readable_json(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def resume_command(path: str | Path) -> str:
    """The command that continues (or restarts) the run in `path`: `mixkd train|distill --resume PATH`."""
    from mixkd.distill import needs_teacher

    try:
        raw = yaml.safe_load((Path(path) / "config.yaml").read_text()) or {}
        method = (raw.get("distill") or {}).get("method", "ce")
        verb = "distill" if needs_teacher(method) else "train"
    except Exception:  # an unreadable config: `train --resume` explains what is wrong with it
        verb = "train"
    return f"mixkd {verb} --resume {path}"


def check_out_dir(path: str | Path, flag: str = "--out") -> None:
    """Fail with one line, before any work, when `path` cannot be created or written; writes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MixkdError(f"{flag} {path} is a file, not a folder; pick another {flag}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MixkdError(f"{flag} {path}: {existing} is a file, so no folder can be made under it; "
                         f"pick another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "permission denied"
        raise MixkdError(f"{flag} {path}: cannot write in {existing} ({why}); pick another {flag}")


class RunInUse(MixkdError):
    """Another process holds the run's lock."""

    def __init__(self, path: Path, pid: int) -> None:
        super().__init__(f"{path} is in use by another mixkd process (pid {pid}); wait for it to finish or stop "
                         f"it (kill {pid}), or pick another --out")


def check_new_run(info: RunInfo, flag: str = "--out") -> None:
    """One line for a folder that a new run must not start in (anything but NEW, or one being written)."""
    p = info.path
    if info.holder is not None:
        raise RunInUse(p, info.holder)
    if info.state is RunState.NEW:
        return
    if info.state is RunState.FOREIGN:
        raise MixkdError(f"{p} is not empty and is not a mixkd run ({info.detail}); mixkd does not write into "
                         f"such a folder: pick another {flag}")
    if info.state is RunState.FINISHED:
        raise MixkdError(f"{p} already holds a finished run; pick another {flag}")
    if info.state is RunState.STARTED:
        raise MixkdError(f"{p} already holds a run that stopped before its first checkpoint; restart it with "
                         f"`{resume_command(p)}`, or pick another {flag}")
    raise MixkdError(f"{p} already holds a run ({info.detail}); continue it with `{resume_command(p)}`, "
                     f"or pick another {flag}")


def check_resumable(info: RunInfo) -> None:
    """One line for a folder that `--resume` cannot continue (no run there, or another process writes it)."""
    p = info.path
    if info.holder is not None:
        raise RunInUse(p, info.holder)
    if info.state is RunState.NEW:
        raise MixkdError(f"nothing to resume in {p}: {info.detail}; start a run there with "
                         f"`mixkd train RECIPE --out {p}`")
    if info.state is RunState.FOREIGN:
        raise MixkdError(f"{p} is not a mixkd run ({info.detail}); --resume takes a folder that "
                         "`mixkd train` or `mixkd distill` wrote")


# --------------------------------------------------------------------------- one writer per run


def _lock_holder(marker: Path) -> int | None:
    """The pid of the process holding `marker`'s lock, or None when nobody holds it."""
    owner = lock_owner(marker)
    return None if owner is None else _read_pid(owner)


def _read_pid(owner: str) -> int:
    try:
        return int(json.loads(owner or "{}").get("pid", 0))
    except (ValueError, AttributeError):
        return 0


class RunLock:
    """The exclusive fcntl lock on a run folder's marker file, held while one process writes the run.

    Acquiring creates the folder and the marker when needed; the kernel releases the lock when the process
    ends however it ends, so a killed run never leaves a stale lock.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.marker = self.path / MARKER
        self._lock: FileLock | None = None
        self._made: list[Path] = []

    def acquire(self) -> None:
        """Take the lock or raise RunInUse naming the holder's pid."""
        check_out_dir(self.path)
        missing = []
        p = self.path
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._made = missing
            marker_existed = self.marker.exists()
            lock = FileLock(self.marker)
            lock.acquire(wait=False)
        except LockHeld as e:
            raise RunInUse(self.path, _read_pid(e.owner)) from None
        except OSError as e:
            raise MixkdError(f"cannot create the run folder {self.path}: {e.strerror}; pick another --out") from None
        if not marker_existed:
            self._made.insert(0, self.marker)
        self._lock = lock
        try:
            lock.write_owner(json.dumps({"format": "mixkd-run", "pid": os.getpid()}) + "\n")
        except OSError as e:
            self.release(discard=True)
            raise _write_error(self.marker, e, marker_existed) from None
        signal_point(f"after:{MARKER}")

    def release(self, discard: bool = False) -> None:
        """Release the lock; with `discard`, also remove the marker and folders this lock created."""
        if self._lock is None:
            return
        if discard:
            for p in self._made:
                try:
                    p.unlink() if p == self.marker else p.rmdir()
                except OSError:  # a folder someone else wrote into stays
                    break
        self._lock.release()
        self._lock = None


# --------------------------------------------------------------------------- comparing configs


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, asked: dict, ignore: frozenset[str] = RESULT_NEUTRAL) -> dict[str, tuple]:
    """{key: (saved value, asked value)} of the dotted keys whose values differ, except those in `ignore`."""
    a, b = _flatten(saved), _flatten(asked)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k not in ignore and a.get(k) != b.get(k)}


def describe_differences(diffs: dict[str, tuple], limit: int = 4) -> str:
    """`key (on disk -> asked), ...` for at most `limit` keys."""
    parts = [f"{k} ({_short(old)} -> {_short(new)})" for k, (old, new) in list(diffs.items())[:limit]]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(parts) + more


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def saved_config(path: str | Path, *, as_reused: bool = True) -> dict:
    """The validated config of the run in `path` (defaults filled in), as nested dicts.

    For deciding whether a run can be reused (`as_reused`), a config written before compiling had `auto`
    (2026-11-30), which says `runtime.compile: false` (the default then), reads as today's default `auto`, as
    its missing `teacher.compile` does: such runs ran uncompiled, as `auto` still runs every run under a
    million training images, and a longer one compiled today differs from them only by float rounding.
    `--resume` reads the file as written (`false` = off), so it continues such a run uncompiled.
    """
    from mixkd.config import from_dict, read_yaml, to_dict

    try:
        raw = read_yaml(Path(path) / "config.yaml")
        runtime = raw.get("runtime")
        if as_reused and isinstance(runtime, dict) and runtime.get("compile") is False:
            raw = {**raw, "runtime": {**runtime, "compile": "auto"}}
        return to_dict(from_dict(raw))
    except ConfigError as e:
        raise ConfigError(f"the run in {path} has a config.yaml mixkd cannot read ({e})") from None


def reuse_problem(info: RunInfo, asked: dict) -> str | None:
    """Why the run in `info` cannot be reused or continued for the config `asked`; None when it can."""
    if info.holder is not None:
        return f"{info.path} is in use by another mixkd process (pid {info.holder})"
    if info.state is RunState.FOREIGN:
        return f"{info.path} is not a mixkd run ({info.detail})"
    if not info.is_run:
        return None
    diffs = config_differences(saved_config(info.path), asked)
    if diffs:
        return f"{info.path} was run with another config: {describe_differences(diffs)}"
    return None


# --------------------------------------------------------------------------- the files of a run


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    last = property(lambda self: self.path / "last.pt")
    best = property(lambda self: self.path / "best.pt")

    def write_config(self, cfg_dict: dict) -> None:
        """Atomically write config.yaml: the resolved config, re-runnable as is, without the method sections
        that do not apply (reading it back fills them in with their defaults)."""
        from mixkd.config import compact_config

        text = yaml.safe_dump(compact_config(cfg_dict), sort_keys=False)
        atomic_write_bytes(self.config, lambda f: f.write(text.encode()))

    def append_metrics(self, row: dict) -> None:
        """Append one JSON line to metrics.jsonl."""
        self.append_jsonl("metrics.jsonl", row)

    def append_jsonl(self, name: str, row: dict) -> None:
        """Append one JSON line to `name`; a failed write (disk full) leaves the file as it was."""
        path = self.path / name
        line = (json.dumps(row, allow_nan=False) + "\n").encode()
        size = path.stat().st_size if path.exists() else 0
        with uninterrupted():
            try:
                with path.open("ab") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                if path.exists():
                    with path.open("r+b") as f:  # truncating needs no space
                        f.truncate(size)
                raise _write_error(path, e, size > 0) from None
            signal_point(f"after:{name}")

    def read_metrics(self) -> list[dict]:
        """All metric rows written so far (a torn last line, which a crash can leave, is not a row)."""
        if not self.metrics.exists():
            return []
        rows = []
        for line in self.metrics.read_text().splitlines():
            try:
                row = json.loads(line) if line.strip() else None
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def truncate_metrics(self, last_epoch: int, last_init_epoch: int = 0) -> None:
        """Keep only rows up to `last_epoch` and init-stage rows up to `last_init_epoch` (later ones are redone)."""
        rows = [r for r in self.read_metrics()
                if r.get("epoch", 0) <= (last_init_epoch if r.get("stage") == "init" else last_epoch)]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics, lambda f: f.write(text.encode()))

    def write_json(self, name: str, data: dict) -> None:
        """Atomically write `name` (e.g. summary.json) in the run directory."""
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(self.path / name, lambda f: f.write(text.encode()))

    def read_json(self, name: str) -> dict:
        """Read a JSON file of the run."""
        return json.loads((self.path / name).read_text())

    def remove_temporary_files(self) -> list[Path]:
        """Delete the `.NAME.*.tmp` files a killed write left behind; returns them."""
        stale = [p for p in self.path.iterdir() if p.name.endswith(".tmp") and _is_our_file(p.name)]
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    def resume_state(self) -> tuple[dict | None, Path | None, str | None]:
        """(checkpoint to continue from, its file, a note when it is not last.pt); reads only.

        last.pt when it is readable, else best.pt (a complete training state of an earlier epoch, so resuming
        from it is as exact as from last.pt), else None: the run restarts from its first epoch.
        """
        problems, states = [], {}
        for path in (self.last, self.best):
            if not path.exists():
                continue
            try:  # both are read: a file that is complete but unreadable here stops the resume (it would be
                states[path] = load_checkpoint(path)  # overwritten by the next epoch's save)
            except UnreadableCheckpoint:
                raise
            except CheckpointError as e:
                problems.append(str(e))
        for path, state in states.items():
            note = f"{'; '.join(problems)}; continuing from best.pt (epoch {state['epoch']})" if problems else None
            return state, path, note
        return None, None, (f"{'; '.join(problems)}; restarting from epoch 1" if problems else None)

    def repair(self, state: dict | None, source: Path | None) -> None:
        """Before a resumed run writes anything: drop what a kill left half-done, so every file agrees with `state`.

        Removes temporary files, cuts metrics.jsonl back to the checkpoint's epoch, rewrites last.pt when the run
        continues from best.pt, and rewrites best.pt when a kill fell between last.pt and best.pt (last.pt is
        written first, so its record of the best epoch is the truth).
        """
        self.remove_temporary_files()
        self.truncate_metrics(state["epoch"] if state else 0, state.get("init_epoch", 0) if state else 0)
        if state is None:
            return
        if source != self.last:
            save_checkpoint(state, self.last)
        if state["epoch"] > 0 and state["best"]["epoch"] == state["epoch"]:  # epoch 0: an init-stage checkpoint
            try:
                best_epoch = load_checkpoint(self.best)["epoch"]
            except UnreadableCheckpoint:
                raise
            except CheckpointError:
                best_epoch = None
            if best_epoch != state["epoch"]:
                save_checkpoint(state, self.best)

