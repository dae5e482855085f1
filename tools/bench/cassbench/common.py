"""cassbench.common - what every part of the harness shares: where things are (the build, the
ring's run folder, the results), the message size ranges, logging, subprocesses, ports, the
generated user population."""
import os
import random
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[3]
BUILD = TOP / "build"
CLUSTER = TOP / "tools" / "cluster"
OUT = TOP / "docs" / "bench"
NET = os.environ.get("CASSMAIL_NET", "127.0.0")
WORK = Path(os.environ.get("CASSMAIL_RUN", TOP / "run")) / "bench"
MB = 1 << 20
SIZES = {"large": (200, 2048), "small": (50, 500)}
SIZE_LABEL = {"large": "200KB-2MB", "small": "50KB-500KB"}
NUSERS = 700


def log(text):
    print(time.strftime("%H:%M:%S"), text, flush=True)


def node(i):
    return f"{NET}.{i}"


def stop_pid(pid, name, wait=15.0):
    """SIGTERM PID (only if it still runs NAME), SIGKILL after WAIT seconds"""
    try:
        if name.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    end = time.time() + wait
    while time.time() < end:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
            if text[text.rindex(")") + 2] == "Z":   # exited; its parent has not reaped it yet
                return
        except OSError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def stop_process(proc, sig=signal.SIGTERM, wait=15.0):
    """SIG to PROC (a Popen) if it still runs, SIGKILL after WAIT seconds; its exit status"""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def sh(*args, **kw):
    kw.setdefault("check", True)
    return subprocess.run([str(a) for a in args], **kw)


# A run at saturation writes the mail twice (inbox, outbox) to the data folder and up to two
# minutes of it to each node's commit log (config/cassandra.yaml): about 50 GB for a 4-minute
# single-node run at 80 MB/s. A run does not start with less free space than this.
MIN_FREE_GB = int(os.environ.get("CASSMAIL_BENCH_MIN_FREE_GB", "60"))


def check_disk():
    """refuse to start a run on a disk that a run could fill"""
    WORK.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(WORK)
    free = st.f_bavail * st.f_frsize / 2**30
    if free < MIN_FREE_GB:
        sys.exit(f"bench: only {free:.0f} GB free under {WORK}; a run may write {MIN_FREE_GB} GB "
                 "(CASSMAIL_BENCH_MIN_FREE_GB); free some space or use another CASSMAIL_RUN")


def users_file():
    """700 generated user names (a fixed seed: the same population every run)"""
    path = WORK / "users.txt"
    if not path.exists():
        rnd = random.Random(7)
        names = set()
        while len(names) < NUSERS:
            names.add(rnd.choice(string.ascii_lowercase) +
                      "".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(4, 8))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{u}@example.com\n" for u in sorted(names)))
    return path
