"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd from Debian's packages, run as
root from a generated slurm.conf in a temporary folder, on free ports, and stopped afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = "slurm-wlm munge"


def missing_reason() -> str | None:
    """Why a test cluster cannot start here (None when it can), installing the Debian packages where missing."""
    if all(shutil.which(d) for d in DAEMONS):
        return None
    if os.geteuid() != 0:
        return f"needs Slurm ({PACKAGES}): not installed, and installing it needs root (make test as root does)"
    if not shutil.which("apt-get"):
        return f"needs Slurm ({PACKAGES}): not installed and no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", *PACKAGES.split()]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return f"needs Slurm: `apt-get install {PACKAGES}` failed: {proc.stderr.strip()[-300:]}"
    return None if all(shutil.which(d) for d in DAEMONS) else f"needs Slurm: {PACKAGES} installed no daemons"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SlurmCluster:
    """munged + slurmctld + slurmd on this host; `env` holds SLURM_CONF for the client commands."""

    def __init__(self, root: Path, partition: str = "debug") -> None:
        self.root, self.partition = root, partition
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._procs: list[tuple[str, int]] = []

    def _write(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "run"):
            (r / d).mkdir(parents=True, exist_ok=True)
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        mem = max(1024, _memory_mb() - 2048)
        self.conf.write_text("\n".join([
            "ClusterName=mixkdtest",
            f"SlurmctldHost={self.node}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"AuthInfo=socket={r / 'run' / 'munge.sock'}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # a task that names no memory gets its CPUs' share, not the whole node (which would run one at a time)
            f"DefMemPerCPU={mem // self.cpus}",
            "SchedulerType=sched/backfill",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "ReturnToService=2",
            "JobRequeue=1",
            "KillWait=30",
            "MinJobAge=30",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            f"NodeName={self.node} CPUs={self.cpus} RealMemory={mem} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def _start(self, name: str, cmd: list[str], pidfile: Path) -> None:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} did not start: {(proc.stderr or proc.stdout).strip()[-500:]}")
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} wrote no pid file {pidfile}")
            time.sleep(0.05)
        self._procs.append((name, int(pidfile.read_text().split()[0])))

    def start(self, timeout: float = 90) -> SlurmCluster:
        """Start the daemons and wait until `sinfo` shows the node idle."""
        self._write()
        r = self.root
        try:
            self._start("munged", ["munged", "--force", f"--socket={r / 'run' / 'munge.sock'}",
                                   f"--key-file={r / 'munge.key'}", f"--pid-file={r / 'run' / 'munged.pid'}",
                                   f"--log-file={r / 'log' / 'munged.log'}", f"--seed-file={r / 'run' / 'munge.seed'}"],
                        r / "run" / "munged.pid")
            self._start("slurmctld", ["slurmctld", "-f", str(self.conf), "-i"], r / "run" / "slurmctld.pid")
            self._start("slurmd", ["slurmd", "-f", str(self.conf)], r / "run" / "slurmd.pid")
            deadline = time.monotonic() + timeout
            while True:
                out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True,
                                     text=True).stdout.split()
                if out and out[0] == "idle":
                    return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {self.node} not idle after {timeout:.0f} s (sinfo: {out}); "
                                       f"see {r / 'log'}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Cancel every job, stop the daemons (SIGTERM, then SIGKILL) in reverse order, and wait for them."""
        subprocess.run(["scancel", "--full", "-u", "root"], env=self.env, capture_output=True, timeout=30)
        for _, pid in reversed(self._procs):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, pid in reversed(self._procs):
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        self._procs.clear()

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command (sinfo, squeue, scancel, ...) against this cluster."""
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, check=check)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
