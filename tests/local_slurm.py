"""A throw-away single-node SLURM cluster on localhost, for tests and the dispatch benchmark.

:class:`LocalSlurm` installs Debian's ``slurm-wlm`` and ``munge`` when they are missing (root only),
writes a minimal ``slurm.conf`` into a temporary folder, and starts ``munged``, ``slurmctld`` and
``slurmd`` in the foreground as child processes of this Python process (so that they can be stopped
by their own process ids, and nothing is left running). Every file the daemons use (munge key and
socket, spool, state, logs, pid files) lives in that folder; ports are picked free at start.

Clients (``sbatch``, ``squeue``, ``srun`` inside the jobs, and therefore submitit) find the cluster
through the ``SLURM_CONF`` environment variable, which :meth:`LocalSlurm.start` exports.

Anything this machine cannot do (not root, no package manager, a daemon that refuses to start in this
container) raises :class:`SlurmUnavailable` with the exact reason, which the tests turn into a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = ("slurm-wlm", "munge")


class SlurmUnavailable(RuntimeError):
    """This machine cannot run a local SLURM cluster; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 8) -> str:
    try:
        lines = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:]) or "(empty log)"


def ensure_installed(timeout: float = 900) -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get when their daemons are not on PATH."""
    if all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm/munge are not installed and installing them needs root "
                               f"(running as uid {os.geteuid()})")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("slurm-wlm/munge are not installed and there is no apt-get on this machine")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {last[0]}")


class LocalSlurm:
    """Single-node SLURM on localhost (``NodeName=localhost``, one partition ``debug``).

    Parameters
    ----------
    workdir : path, an empty folder for configuration, state, spool and logs
    cpus : int, CPUs the node offers (default: ``min(2, os.cpu_count())``)
    real_memory_mb : int, memory the node advertises (small: jobs must request less)

    Example
    -------
    >>> with LocalSlurm(tmp_path) as cluster:          # doctest: +SKIP
    ...     subprocess.run(["sinfo"], env=cluster.env)
    """

    def __init__(self, workdir, cpus: int | None = None, real_memory_mb: int = 2000):
        self.workdir = Path(workdir).resolve()
        self.cpus = cpus or min(2, os.cpu_count() or 1)
        self.real_memory_mb = real_memory_mb
        self.procs: dict = {}
        self.conf = self.workdir / "slurm.conf"
        self._old_slurm_conf = None

    # -- configuration -------------------------------------------------------------------
    def _write_config(self):
        w = self.workdir
        for sub in ("munge", "spool", "state", "log", "run"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(w / "munge", 0o700)
        key = w / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = w / "munge" / "munge.socket"
        # slurmctld compares SlurmctldHost with the *short* host name
        controller = socket.gethostname().split(".")[0]
        text = f"""\
# Minimal single-node cluster written by tests/local_slurm.py (no cgroups, no accounting).
ClusterName=reprobust-test
SlurmctldHost={controller}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={w / 'state'}
SlurmdSpoolDir={w / 'spool'}
SlurmctldPidFile={w / 'run' / 'slurmctld.pid'}
SlurmdPidFile={w / 'run' / 'slurmd.pid'}
SlurmctldLogFile={w / 'log' / 'slurmctld.log'}
SlurmdLogFile={w / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
MaxArraySize=10001
NodeName=localhost NodeHostname={controller} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        self.conf.write_text(text)

    @property
    def env(self) -> dict:
        """The environment clients need (``SLURM_CONF`` pointing at this cluster)."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    # -- life cycle ------------------------------------------------------------------------
    def _spawn(self, name, cmd):
        log = open(self.workdir / "log" / f"{name}.out", "wb")
        try:
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                cwd=self.workdir)
        finally:
            log.close()

    def _check_alive(self, name):
        proc = self.procs[name]
        if proc.poll() is not None:
            logs = _tail(self.workdir / "log" / f"{name}.out")
            if name != "munged":
                logs += " | " + _tail(self.workdir / "log" / f"{name}.log")
            raise SlurmUnavailable(f"{name} exited with status {proc.returncode} on start: {logs}")

    def start(self, timeout: float = 90) -> "LocalSlurm":
        """Start munged, slurmctld and slurmd and wait until the node is idle; export ``SLURM_CONF``."""
        if os.geteuid() != 0:
            raise SlurmUnavailable(f"starting slurmd needs root (running as uid {os.geteuid()})")
        ensure_installed()
        self._write_config()
        w = self.workdir
        try:
            self._spawn("munged", ["munged", "-F", "--force", f"--socket={self.munge_socket}",
                                   f"--key-file={w / 'munge' / 'munge.key'}",
                                   f"--pid-file={w / 'munge' / 'munged.pid'}",
                                   f"--log-file={w / 'log' / 'munged.log'}",
                                   f"--seed-file={w / 'munge' / 'munged.seed'}"])
            self._wait(lambda: self.munge_socket.exists(), "munged", 20)
            # -i: ignore (absent) saved state; -D: foreground, so the process id is ours to stop.
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._wait(lambda: self._ok(["scontrol", "ping"]) and "UP" in self._out(["scontrol", "ping"]),
                       "slurmctld", timeout)
            self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
            self._wait(lambda: self._out(["sinfo", "-h", "-n", "localhost", "-o", "%t"]).strip() in ("idle", "mix"),
                       "slurmd", timeout)
        except BaseException:
            self.stop()
            raise
        self._old_slurm_conf = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(self.conf)
        return self

    def _ok(self, cmd) -> bool:
        try:
            return subprocess.run(cmd, env=self.env, capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _out(self, cmd) -> str:
        try:
            return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    def _wait(self, ready, name, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self._check_alive(name)
            if ready():
                return
            time.sleep(0.5)
        detail = _tail(self.workdir / "log" / f"{name}.log") if name != "munged" else _tail(
            self.workdir / "log" / "munged.log")
        if name == "slurmd":
            detail = self._out(["sinfo", "-h", "-N", "-o", "%N %t %E"]).strip() + " | " + detail
        raise SlurmUnavailable(f"{name} did not become ready within {timeout:.0f} s: {detail}")

    def stop(self) -> None:
        """Cancel remaining jobs, then stop the daemons this object started (by process id)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self._ok(["scancel", "--full", "--partition=debug"])
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._old_slurm_conf is None:
            if os.environ.get("SLURM_CONF") == str(self.conf):
                os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self._old_slurm_conf
            self._old_slurm_conf = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
