"""cassbench.ring - a fresh tools/cluster ring for each run, and the accounting done from /proc
(no cgroups): CPU seconds of processes and of the whole machine, octets a process wrote to disk,
and the JVM's CPU by thread group."""
import os
import re
import shutil
import subprocess
from pathlib import Path

from .common import CLUSTER, WORK, check_disk, log, node, sh

TICK = os.sysconf("SC_CLK_TCK")
# the JVM's threads by the name it gives them (/proc/PID/task/TID/comm), for CPU per thread group
JVM_GROUPS = [("CompactionExecutor", r"^CompactionExec"), ("FlushWriter", r"^FlushWriter"),
              ("COMMIT-LOG-WRITER", r"^COMMIT-LOG"), ("GC", r"^(GC Thread|ParGC|G1|VM Thread|GC )"),
              ("JIT compiler", r"^C[12] Compiler"), ("MutationStage", r"^MutationStage"),
              ("Thrift (pool-*)", r"^pool-"), ("Memtable/flush sorter", r"^(MemtablePost|FLUSH-SORTER|FlushSorter)")]


def proc_cpu(pid, children=True):
    """CPU seconds of PID from /proc/PID/stat (utime+stime, plus reaped children's if asked)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = text[text.rindex(")") + 2:].split()
    ticks = int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if children else 0)
    return ticks / TICK


def busy_seconds():
    """CPU seconds the whole machine has spent busy (not idle or iowait) since boot"""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / TICK


def proc_children(pid):
    """pids whose parent is PID"""
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                text = (p / "stat").read_text()
                if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def write_bytes(pid):
    """octets PID has caused to be written to disk (/proc/PID/io write_bytes)"""
    m = re.search(r"^write_bytes: (\d+)", Path(f"/proc/{pid}/io").read_text(), re.M)
    return int(m.group(1)) if m else 0


def jvm_group(name):
    """the JVM_GROUPS name of a thread called NAME"""
    for g, rx in JVM_GROUPS:
        if re.search(rx, name):
            return g
    return "other"


def jvm_threads(pid):
    """{tid: (comm, cpu seconds)} of PID's live threads"""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (t / "comm").read_text().strip()
            out[t.name] = (comm, proc_cpu(f"{pid}/task/{t.name}", children=False))
        except OSError:
            pass
    return out


def jvm_groups(before, after, total):
    """{group: CPU seconds} between two jvm_threads snapshots; what threads that ended in between
    used (TOTAL minus the rest) under its own name"""
    per = {}
    for tid, (comm, c1) in after.items():
        c0 = before.get(tid, (comm, 0.0))[1]
        per[jvm_group(comm)] = per.get(jvm_group(comm), 0.0) + c1 - c0
    per["(threads ended in the window)"] = total - sum(per.values())
    return per


class Ring:
    """A fresh tools/cluster ring of N nodes in this environment's run folder."""

    def __init__(self, n):
        self.n = n
        sh(CLUSTER, "stop", check=False, stdout=subprocess.DEVNULL)
        check_disk()
        log(f"starting a fresh ring of {n} node(s) on {node(1)}..{node(n)}")
        sh(CLUSTER, "start", n, "--fresh", stdout=subprocess.DEVNULL)

    def pids(self):
        out = sh(CLUSTER, "status", capture_output=True, text=True, check=False).stdout
        return {int(m.group(1)): int(m.group(2))
                for m in re.finditer(r"^node (\d+) \S+ pid (\d+) up", out, re.M)}

    def cpu(self):
        return sum(proc_cpu(p, children=False) for p in self.pids().values())

    def written(self):
        """octets the nodes have written to disk (/proc/PID/io write_bytes)"""
        return sum(write_bytes(p) for p in self.pids().values())

    def kill(self, i):
        sh(CLUSTER, "kill", i, stdout=subprocess.DEVNULL)

    def stop(self, keep=False):
        """stop every node; unless KEEP, delete the ring's data (a run writes tens of GB)"""
        sh(CLUSTER, "stop", check=False, stdout=subprocess.DEVNULL)
        if not keep:
            shutil.rmtree(WORK.parent / "cluster", ignore_errors=True)

    def restart(self):
        """start the stopped ring again on the data it has"""
        sh(CLUSTER, "start", self.n, stdout=subprocess.DEVNULL)

