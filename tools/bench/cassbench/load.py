"""cassbench.load - the load generators and what they report: Postal (SMTP, one report per
wall-clock minute), rabid (POP3 drains, counted from the server's log), poplib clients (POP3
reads), cassmail-load (the store without SMTP, one report per 15 seconds)."""
import os
import random
import re
import resource
import statistics
import subprocess
import time

from .common import BUILD, MB, SIZES, WORK, log, users_file


def next_label(hhmm):
    """the label of the Postal report that covers wall-clock minute HH:MM (printed at its end)"""
    h, m = map(int, hhmm.split(":"))
    m += 1
    return f"{(h + m // 60) % 24:02d}:{m % 60:02d}"


def align_start():
    """wait until second 0-25 of a minute so that the first, discarded report covers 35-60 s"""
    sec = time.localtime().tm_sec
    if sec > 25:
        time.sleep(60 - sec + 1)


def run_postal(ports, size, threads, warmup, minutes, on_report=None):
    """Postal against 127.0.0.1:PORTS until WARMUP+MINUTES full reports after the partial one;
    ON_REPORT(K) after each report, K the full ones so far (0: the partial one, so that a window
    can start at the first full minute). Returns (reports [(label, msgs, kb, errors)] of every
    full minute, client CPU seconds)."""
    lo, hi = SIZES[size]
    servers = ",".join(f"[127.0.0.1]{p}" for p in ports)
    align_start()
    cwd = WORK / "postal"
    cwd.mkdir(parents=True, exist_ok=True)
    args = ["postal", "-M", str(lo), "-m", str(hi), "-t", str(threads), servers, str(users_file())]
    log(f"  postal {' '.join(args[1:-1])} ({warmup} warm-up + {minutes} measured minutes)")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    reports, first = [], True
    for line in proc.stdout:
        m = re.match(r"^(\d\d:\d\d),(\d+),(\d+),(\d+),", line)
        if not m:
            continue
        if first:
            first = False
            log(f"  {line.strip()}  (partial minute, discarded)")
            if on_report:
                on_report(0)
            continue
        rep = (m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)))
        reports.append(rep)
        tag = "warm-up" if len(reports) <= warmup else "measured"
        log(f"  {line.strip()}  ({tag}: Postal {rep[2] / 1024 / 60:.1f} MB/s)")
        if on_report:
            on_report(len(reports))
        if len(reports) >= warmup + minutes:
            break
    proc.kill()   # Postal ignores SIGINT while its threads are busy; its partial messages are not counted
    proc.communicate()
    # Postal's own CPU: what this process's reaped children used while it ran (only Postal, and
    # in fig6 one short `tools/cluster kill`).
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return reports, (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)


def summarize(reports, accepted, warmup):
    """(postal mean, sd, server mean, sd, messages, errors) over the measured minutes (MB/s)"""
    measured = reports[warmup:]
    per_min = {}
    for stamp, octets in accepted:
        lab = next_label(stamp[:5])
        per_min[lab] = per_min.get(lab, 0) + octets
    postal = [kb / 1024 / 60 for _, _, kb, _ in measured]
    server = [per_min.get(lab, 0) / MB / 60 for lab, _, _, _ in measured]
    # the server-side spread: 15-second bins of the measured minutes (more samples than minutes)
    bins = {}
    for stamp, octets in accepted:
        h, m, sec = map(int, stamp.split(":"))
        bins[(h * 3600 + m * 60 + sec) // 15] = bins.get((h * 3600 + m * 60 + sec) // 15, 0) + octets
    fifteen = []
    for lab, _, _, _ in measured:
        h, m = map(int, lab.split(":"))
        end = (h * 3600 + m * 60) // 15
        fifteen += [bins.get(b, 0) / MB / 15 for b in range(end - 4, end)]

    def mean(v):
        return statistics.mean(v) if v else float("nan")

    def sd(v):
        return statistics.stdev(v) if len(v) > 1 else float("nan")
    return (mean(postal), sd(postal), mean(server), sd(fifteen), sum(r[1] for r in measured),
            sum(r[3] for r in measured))


def run_load(conf, size, procs, secs):
    """cassmail-load with PROCS processes for SECS seconds on CONF; its 15-second reports
    [(seconds, messages, KB, errors)] and its rusage"""
    lo, hi = SIZES[size]
    proc = subprocess.Popen([BUILD / "cassmail-load", "-c", conf, "-u", users_file(),
                             "-M", str(lo), "-m", str(hi), "-p", str(procs),
                             "-d", str(secs), "-i", "15"], stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        m = re.match(r"^(\d+),(\d+),(\d+),(\d+)", line)
        if m:
            lines.append(tuple(map(int, m.groups())))
            log(f"  cassmail-load t={lines[-1][0]}s {lines[-1][2] / 1024 / 15:.1f} MB/s")
    _, _, ru = os.wait4(proc.pid, 0)
    return lines, ru


def pop_worker(port, users, deadline, seed, queue):
    """one POP3 client: log in as a random user, LIST, RETR every message, QUIT, until DEADLINE;
    puts [(time, octets)] of every message retrieved"""
    import poplib
    rnd, got = random.Random(seed), []
    while time.time() < deadline:
        user, pw = rnd.choice(users)
        try:
            c = poplib.POP3("127.0.0.1", port, timeout=60)
            c.user(user)
            c.pass_(pw)
            _, listing, _ = c.list()
            for entry in listing:
                if time.time() >= deadline:
                    break
                _, lines, octets = c.retr(int(entry.split()[0]))
                got.append((time.time(), octets))
            c.quit()
        except (OSError, poplib.error_proto):
            got.append((time.time(), -1))
    queue.put(got)


def pop_load(port, users, minutes, procs):
    """PROCS poplib clients against 127.0.0.1:PORT; (MB/s per measured full minute, errors)"""
    import multiprocessing
    align_start()
    now = time.time()
    first = (int(now) // 60 + 1) * 60        # the end of the partial first minute (discarded)
    deadline = first + 60 * minutes
    log(f"  {procs} POP3 clients (poplib: USER/PASS, LIST, RETR all, QUIT) until "
        f"{time.strftime('%H:%M:%S', time.localtime(deadline))}")
    queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=pop_worker, args=(port, users, deadline, k, queue))
               for k in range(procs)]
    for w in workers:
        w.start()
    got = [x for _ in workers for x in queue.get()]
    for w in workers:
        w.join()
    per_min = [0] * minutes
    errors = 0
    for t, octets in got:
        k = int((t - first) // 60)
        if 0 <= k < minutes:
            if octets < 0:
                errors += 1
            else:
                per_min[k] += octets
    mbs = [o / MB / 60 for o in per_min]
    for k, v in enumerate(mbs, 1):
        log(f"  minute {k}: {v:.1f} MB/s")
    total_mb = sum(o for _, o in got if o > 0) / MB
    return mbs, errors, sum(1 for t, o in got if o >= 0 and first <= t < deadline), total_mb


class Drained:
    """What a POP3 server's own log says it handed out and deleted: the servers' view of a drain.
    cassmail-pop3d logs "session end ... retrieved=N/OCTETS deleted=N" per session, Dovecot
    "Disconnected: Logged out top=.., retr=N/OCTETS, del=N/M" (its default pop3_logout_format)."""

    RX = {"cassmail-pop3d": re.compile(r"session end .* retrieved=(\d+)/(\d+) deleted=(\d+) "),
          "dovecot": re.compile(r"Logged out .*retr=(\d+)/(\d+), del=(\d+)/")}

    def __init__(self, system, logfile):
        self.rx, self.logfile = self.RX[system], logfile
        self.offset = logfile.stat().st_size if logfile.exists() else 0

    def totals(self):
        """(messages retrieved, octets retrieved, messages deleted) since this object was made"""
        got = [0, 0, 0]
        with open(self.logfile, "rb") as f:
            f.seek(self.offset)
            for line in f.read().decode(errors="replace").splitlines():
                m = self.rx.search(line)
                if m:
                    for k in range(3):
                        got[k] += int(m.group(k + 1))
        return tuple(got)


def rabid_drain(system, port, users_list, logfile, total, procs, limit_s=600):
    """rabid (Postal's POP3 load generator, its default mode: every message of a random account
    retrieved and deleted) with PROCS processes until the server's log shows all TOTAL messages
    deleted. rabid 0.76 prints no report of its own and stalls after the first message when told
    to keep messages (-d 100:0), so it runs in the mode it supports and the server counts.
    Returns (seconds, octets retrieved, messages retrieved, rabid's CPU seconds)."""
    drained = Drained(system, logfile)
    cwd = WORK / "rabid"
    cwd.mkdir(parents=True, exist_ok=True)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.Popen(["rabid", "-p", str(procs), "-u", f"[127.0.0.1]{port}", str(users_list)],
                            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    msgs = octets = deleted = 0
    next_log = t0 + 10
    try:
        while time.time() - t0 < limit_s:
            time.sleep(0.25)
            msgs, octets, deleted = drained.totals()
            if deleted >= total:
                break
            if time.time() >= next_log:
                log(f"  rabid against {system}: {deleted}/{total} messages, "
                    f"{octets / MB / (time.time() - t0):.1f} MB/s so far")
                next_log += 10
        elapsed = time.time() - t0
    finally:
        proc.kill()   # rabid ignores SIGINT
        proc.wait()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if deleted < total:
        log(f"  rabid against {system}: only {deleted}/{total} messages deleted in {limit_s} s")
    return elapsed, octets, msgs, (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
