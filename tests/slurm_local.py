"""A single-node SLURM on localhost for a test: munged, slurmctld and slurmd started as root in a tmp folder.

Debian's `slurm-wlm` and `munge` (installed by `.ci/run`). Everything lives under the folder: the
munge key and socket, slurm.conf, spool, state, pid and log files; `SLURM_CONF` points the clients
(sbatch, squeue) at it. Nothing listens beyond 127.0.0.1's ports chosen here, and `stop()` ends the
three daemons by their pids.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue")


def missing_reason() -> str | None:
    """Why a local SLURM cannot start here (None when it can)."""
    if os.geteuid() != 0:
        return "the SLURM test starts munged, slurmctld and slurmd as root; this process is not root"
    return None


def missing_programs() -> list[str]:
    """Programs of slurm-wlm/munge not on PATH (also /usr/sbin)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [d for d in DAEMONS if not shutil.which(d, path=path)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """`with LocalSlurm(tmp) as env:` — `env` is the environment (SLURM_CONF, PATH) for sbatch and squeue."""

    def __init__(self, folder: Path, cpus: int | None = None):
        self.folder = Path(folder)
        self.cpus = cpus or os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []
        self.pids: dict[str, Path] = {}
        self.env = dict(os.environ)
        self.env["PATH"] = self.env.get("PATH", "") + ":/usr/sbin:/sbin"

    def __enter__(self) -> dict[str, str]:
        f = self.folder
        for sub in ("munge", "spool", "state", "log"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(f / "munge", 0o700)
        key, sock = f / "munge" / "munge.key", f / "munge" / "munge.socket"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}", "--force"], check=True, env=self.env,
                       capture_output=True)
        os.chmod(key, 0o600)
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={f / 'munge' / 'munged.pid'}", f"--log-file={f / 'log' / 'munged.log'}",
                        f"--seed-file={f / 'munge' / 'munged.seed'}"], check=True, env=self.env, capture_output=True)
        self.pids["munged"] = f / "munge" / "munged.pid"
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        conf = f / "slurm.conf"
        conf.write_text("\n".join([
            "ClusterName=dlmtest", "SlurmctldHost=localhost", f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
            f"AuthInfo=socket={sock}", "CredType=cred/munge", f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}", f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}", f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log' / 'slurmd.log'}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "SchedulerType=sched/builtin",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none", "ReturnToService=2", "SlurmctldTimeout=30", "SlurmdTimeout=30",
            "InactiveLimit=0", "KillWait=5", "MinJobAge=300",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={max(mem, 1)} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP", ""]))
        self.env["SLURM_CONF"] = str(conf)
        for daemon in ("slurmctld", "slurmd"):
            # -D: stay in the foreground, so the process is ours to end; -c: a clean state
            log = open(f / "log" / f"{daemon}.out", "w")  # noqa: SIM115 (closed in stop)
            args = [daemon, "-D", "-f", str(conf)] + (["-c", "-i"] if daemon == "slurmctld" else ["-N", "localhost"])
            self.procs.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(1.0)
        self._wait_idle()
        return self.env

    def _wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the node is up (idle); RuntimeError with the daemons' logs otherwise."""
        end = time.monotonic() + timeout
        state = ""
        while time.monotonic() < end:
            out = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=self.env, capture_output=True, text=True)
            state = out.stdout.strip()
            if state.startswith("idle"):
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(1.0)
        logs = "\n".join(p.read_text()[-1500:] for p in sorted((self.folder / "log").glob("*")) if p.is_file())
        self.stop()
        raise RuntimeError(f"local SLURM did not come up (node state {state!r}):\n{logs}")

    def stop(self) -> None:
        """Cancel every job, then end slurmd, slurmctld, munged and whatever our cluster started (slurmstepd, srun)."""
        if self.procs and all(p.poll() is None for p in self.procs):
            subprocess.run(["scancel", "--full", "--partition=debug"], env=self.env, capture_output=True)
            end = time.monotonic() + 30
            while time.monotonic() < end:
                out = subprocess.run(["squeue", "--noheader"], env=self.env, capture_output=True, text=True)
                if out.returncode or not out.stdout.strip():
                    break
                time.sleep(1.0)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs = []
        pid_file = self.pids.pop("munged", None)
        if pid_file and pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        for pid in self._our_processes():  # slurmstepd and srun outlive slurmd: ours carry our SLURM_CONF
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _our_processes(self) -> list[int]:
        """Processes (other than this one) whose environment names this cluster's slurm.conf."""
        marker = f"SLURM_CONF={self.env.get('SLURM_CONF', '')}".encode()
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid() or not self.env.get("SLURM_CONF"):
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
            except OSError:
                continue
        return out

    def __exit__(self, *exc) -> None:
        self.stop()
