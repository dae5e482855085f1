"""cassbench.experiments - the paper's evaluation (section 5) and the comparisons beside it: the
runs behind each of tools/bench/run's EXPERIMENTs, each appending its rows to docs/bench/NAME.csv
(tools/bench/run's help says what each one measures and how)."""
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import BUILD, MB, OUT, SIZE_LABEL, WORK, log, node, sh, stop_pid, stop_process, users_file
from .load import next_label, pop_load, rabid_drain, run_load, run_postal, summarize
from .report import (BASELINE_RUNS, append_csv, append_row, baseline_run_key, fig6_minutes,
                     keep_csv_rows, keep_rows, write_fig6_minutes)
from .ring import Ring, busy_seconds, jvm_groups, jvm_threads, proc_children, proc_cpu
from .servers import Postfix, Smtpd, dovecot_start, make_schema, pop3d_start, write_conf


# the layouts compared: [store] inline_max (the paper's: every message inline, a copy per mailbox;
# parts: the default, bodies above 64 KiB once in Bodies) and [smtp] outbox_copy (local: inbox
# and the local sender's outbox, two mailboxes a message as in the paper; never: the inbox only)
LAYOUTS = {"paper": {"inline_max": 10240000}, "parts": {"inline_max": 65536}}
COPIES = {2: "local", 1: "never"}


# ---------------------------------------------------------------------------------------------
# one CassMail run


def cassmail_run(args, exp, nodes, rf, cl, size, smtp_nodes=None, kill=None, minute_rows=None,
                 layout="paper", copies=2, postal_threads=None):
    """a fresh ring, schema, smtpd on SMTP_NODES, Postal with POSTAL_THREADS in all (default
    --threads); LAYOUT and COPIES (mailboxes a message) as in LAYOUTS and COPIES; one CSV row for
    each experiment in EXP"""
    started = time.strftime("%H:%M:%S")
    log(f"run: CassMail {nodes} node(s) RF {rf} CL {cl} {SIZE_LABEL[size]}")
    ring = Ring(nodes)
    servers = []
    try:
        make_schema(ring, rf, cl)
        smtp_nodes = smtp_nodes or list(range(1, nodes + 1))
        servers = [Smtpd(ring, i, rf, cl, f"{exp[0]}-n{nodes}-rf{rf}-{cl}-{size}",
                         outbox_copy=COPIES[copies], **LAYOUTS[layout]) for i in smtp_nodes]
        # --threads in all, spread over the servers, and at least 2 per server
        threads = max(2, -(-(postal_threads or args.threads) // len(servers)))
        cass0, busy0, t0, wr0 = ring.cpu(), busy_seconds(), time.time(), ring.written()
        threads0 = jvm_threads(ring.pids()[1]) if nodes == 1 else None

        def on_report(k):
            if kill and k == kill[0]:
                log(f"  SIGKILL Cassandra node {kill[1]} (no SMTP server on it)")
                ring.kill(kill[1])
        reports, client_cpu = run_postal([s.port for s in servers], size, threads,
                                         args.warmup if not kill else 0, args.minutes
                                         if not kill else args.fig6_minutes, on_report)
        time.sleep(2)
        cass_cpu = ring.cpu() - cass0
        groups = jvm_groups(threads0, jvm_threads(ring.pids()[1]), cass_cpu) if threads0 else {}
        written = ring.written() - wr0
        server_cpu = sum(s.cpu() for s in servers)
        others = (busy_seconds() - busy0 - cass_cpu - server_cpu - client_cpu) / (time.time() - t0)
    finally:
        for s in servers:
            s.stop()
        ring.stop()
    accepted = [a for s in servers for a in s.accepted()]
    refused = [r for s in servers for r in s.refused()]
    total_mb = sum(o for _, o in accepted) / MB
    warm = args.warmup if not kill else 0
    pm, psd, sm, ssd, msgs, errs = summarize(reports, accepted, warm)
    row = dict(system="cassmail", nodes=nodes, rf=rf, cl=cl, size=SIZE_LABEL[size],
               threads=threads * len(servers), measured_min=len(reports) - warm,
               postal_mbs=pm, postal_sd=psd, server_mbs=sm, server_sd=ssd, messages=msgs,
               errors=errs, started=started, other_cores=max(0.0, others),
               cpu_server_s_per_mb=server_cpu / total_mb if total_mb else float("nan"),
               cpu_cassandra_s_per_mb=cass_cpu / total_mb if total_mb else float("nan"),
               cpu_client_s_per_mb=client_cpu / total_mb if total_mb else float("nan"),
               layout=layout, copies=copies,
               cassandra_written_mb_per_mb=written / MB / total_mb if total_mb else float("nan"))
    log(f"  => Postal {pm:.1f} ± {psd:.1f} MB/s, server {sm:.1f} ± {ssd:.1f} MB/s, "
        f"{errs} errors; CPU s/MB smtpd {row['cpu_server_s_per_mb']:.3f} "
        f"Cassandra {row['cpu_cassandra_s_per_mb']:.3f} Postal {row['cpu_client_s_per_mb']:.3f}; "
        f"other processes used {others:.2f} cores")
    for e in exp:
        append_row(e, dict(row, experiment=e))
    if "baselines" in exp and groups and total_mb:
        # Cassandra's CPU per MB by thread group, beside baselines.csv
        append_csv(OUT / "baselines-threads.csv", ["run", "size", "started", "group", "cpu_s_per_mb"],
                   [[f"{layout}:{copies}", SIZE_LABEL[size], started, g, f"{c / total_mb:.4f}"]
                    for g, c in sorted(groups.items(), key=lambda x: -x[1])])
        log("  Cassandra by thread group, CPU-s/MB: " +
            ", ".join(f"{g} {c / total_mb:.4f}" for g, c in sorted(groups.items(), key=lambda x: -x[1])))
    if minute_rows is not None:
        per_min, n_acc, n_ref = {}, {}, {}
        for stamp, octets in accepted:
            lab = next_label(stamp[:5])
            per_min[lab] = per_min.get(lab, 0) + octets
            n_acc[lab] = n_acc.get(lab, 0) + 1
        for stamp in refused:
            lab = next_label(stamp[:5])
            n_ref[lab] = n_ref.get(lab, 0) + 1
        for k, (lab, n, kb, err) in enumerate(reports, 1):
            minute_rows.append(dict(cl=cl, threads=threads * len(servers), minute=k,
                                    postal_mbs=f"{kb / 1024 / 60:.3f}",
                                    server_mbs=f"{per_min.get(lab, 0) / MB / 60:.3f}",
                                    messages=n, errors=err, accepted=n_acc.get(lab, 0),
                                    refused=n_ref.get(lab, 0)))
    return row


# ---------------------------------------------------------------------------------------------
# experiments


def scaling(args, wanted):
    """fig3/fig4/fig5 runs; a run that several of the wanted figures need is made once"""
    plan = {}
    for n in args.sizes:
        if "fig3" in wanted:
            for rf in (1, 2, 3):
                if rf <= n:
                    plan.setdefault((n, rf, "ONE", "large"), []).append("fig3")
        if "fig4" in wanted and n >= 2:
            for rf in (2, 3):
                if rf <= n:
                    for cl in ("ONE", "ALL"):
                        plan.setdefault((n, rf, cl, "large"), []).append("fig4")
        if "fig5" in wanted:
            for size in ("large", "small"):
                plan.setdefault((n, 1, "ONE", size), []).append("fig5")
    log(f"{len(plan)} runs planned for {', '.join(sorted(wanted))}")
    # rows of the ring sizes being run are replaced; other sizes' rows from an earlier run stay
    for e in wanted:
        keep_rows(e, lambda r: int(r["nodes"]) not in args.sizes)
    for (n, rf, cl, size), exps in plan.items():
        cassmail_run(args, exps, n, rf, cl, size)


def threads(args):
    """how many Postal threads saturate one node: 4, 8 and 16 on CassMail (RF 1, ONE, 200KB-2MB)"""
    (OUT / "threads.csv").unlink(missing_ok=True)
    for t in (4, 8, 16):
        cassmail_run(args, ["threads"], 1, 1, "ONE", "large", postal_threads=t)


def fig6(args):
    """8 nodes, RF 2, SMTP on nodes 1-4, node 8 killed; for each --fig6-cls at --fig6-threads.
    Rows of other (CL, threads) pairs from an earlier run stay, so a variant can be added."""
    threads = args.fig6_threads or args.threads
    runs = {(cl, str(max(2, -(-threads // 4)) * 4)) for cl in args.fig6_cls}
    keep_rows("fig6", lambda r: (r["cl"], r["threads"]) not in runs)
    rows = [r for r in fig6_minutes() if (r["cl"], r["threads"]) not in runs]
    try:
        for cl in args.fig6_cls:
            cassmail_run(args, ["fig6"], 8, 2, cl, "large", smtp_nodes=[1, 2, 3, 4],
                         kill=(args.kill_after, 8), minute_rows=rows, postal_threads=threads)
    finally:
        write_fig6_minutes(rows)

def postfix_run(args, size):
    started = time.strftime("%H:%M:%S")
    log(f"run: Postfix (private instance, virtual Maildir) {SIZE_LABEL[size]}")
    pf = Postfix()
    try:
        cpu0, busy0, t0 = pf.cpu(), busy_seconds(), time.time()
        reports, client_cpu = run_postal([pf.port], size, args.threads, args.warmup, args.minutes)
        time.sleep(5)
        cpu = pf.cpu() - cpu0
        others = (busy_seconds() - busy0 - cpu - client_cpu) / (time.time() - t0)
    finally:
        pf.stop()
    accepted = pf.accepted()
    total_mb = sum(o for _, o in accepted) / MB
    pm, psd, sm, ssd, msgs, errs = summarize(reports, accepted, args.warmup)
    dm = summarize(reports, pf.delivered(), args.warmup)[2]
    row = dict(experiment="baselines", system="postfix", nodes=1, rf="", cl="",
               size=SIZE_LABEL[size], threads=args.threads, measured_min=args.minutes,
               postal_mbs=pm, postal_sd=psd, server_mbs=sm, server_sd=ssd, messages=msgs,
               errors=errs, started=started, other_cores=max(0.0, others), delivered_mbs=dm,
               cpu_server_s_per_mb=cpu / total_mb if total_mb else 0.0,
               cpu_client_s_per_mb=client_cpu / total_mb if total_mb else 0.0)
    log(f"  => Postal {pm:.1f} ± {psd:.1f} MB/s, Postfix queued {sm:.1f} ± {ssd:.1f} MB/s, "
        f"delivered to Maildir {dm:.1f} MB/s, {errs} errors")
    append_row("baselines", row)


def ceiling_run(args, size):
    """cassmail-load straight into a fresh single node: the store's ceiling without SMTP"""
    started = time.strftime("%H:%M:%S")
    log(f"run: storage ceiling (cassmail-load, {args.threads} processes) {SIZE_LABEL[size]}")
    ring = Ring(1)
    try:
        conf = make_schema(ring, 1, "ONE")
        cass0, busy0, t0 = ring.cpu(), busy_seconds(), time.time()
        secs = 45 + 60 * (args.warmup + args.minutes)
        lines, ru = run_load(conf, size, args.threads, secs)
        cass_cpu = ring.cpu() - cass0
        others = (busy_seconds() - busy0 - cass_cpu - ru.ru_utime - ru.ru_stime) / (time.time() - t0)
    finally:
        ring.stop()
    # 15-second reports; the first 45 s (+ warm-up minutes) are discarded, the rest grouped by minute
    skip = 3 + 4 * args.warmup
    body = lines[skip:skip + 4 * args.minutes]
    per_min = [sum(x[2] for x in body[k:k + 4]) / 1024 / 60 for k in range(0, len(body), 4)]
    total_mb = sum(x[2] for x in lines) / 1024
    mean = statistics.mean(per_min) if per_min else float("nan")
    # the spread over 15-second reports, as for the SMTP runs' server-side figure
    fifteen = [x[2] / 1024 / 15 for x in body]
    sd = statistics.stdev(fifteen) if len(fifteen) > 1 else float("nan")
    row = dict(experiment="baselines", system="ceiling", nodes=1, rf=1, cl="ONE",
               size=SIZE_LABEL[size], threads=args.threads, measured_min=len(per_min),
               server_mbs=mean, server_sd=sd, messages=sum(x[1] for x in body),
               errors=sum(x[3] for x in body), started=started, other_cores=max(0.0, others),
               cpu_cassandra_s_per_mb=cass_cpu / total_mb if total_mb else 0.0,
               cpu_client_s_per_mb=(ru.ru_utime + ru.ru_stime) / total_mb if total_mb else 0.0)
    log(f"  => storage ceiling {mean:.1f} ± {sd:.1f} MB/s")
    append_row("baselines", row)


def baselines(args):
    for run in args.baseline_runs:
        if run not in BASELINE_RUNS:
            sys.exit(f"run: --baseline-runs: unknown run {run!r} (known: {','.join(BASELINE_RUNS)})")
    labels = {SIZE_LABEL[s] for s in args.ranges}
    keep_rows("baselines", lambda r: r["size"] not in labels or baseline_run_key(r) not in args.baseline_runs)
    keep_csv_rows(OUT / "baselines-threads.csv", lambda r: r[1] not in labels or r[0] not in args.baseline_runs)
    for size in args.ranges:
        for run in BASELINE_RUNS:
            if run not in args.baseline_runs:
                continue
            if run == "postfix":
                postfix_run(args, size)
            elif run == "ceiling":
                ceiling_run(args, size)
            else:
                layout, copies = run.split(":")
                cassmail_run(args, ["baselines"], 1, 1, "ONE", size, layout=layout, copies=int(copies))


def layouts(args):
    """the paper's layout against bodies in parts, each with two mailboxes a message (Postal's
    local senders, outbox_copy=local) and with one (never), on one node: MB/s, Cassandra CPU-s
    and octets written to disk per MB of mail"""
    (OUT / "layouts.csv").unlink(missing_ok=True)
    for size in args.ranges:
        for copies in (2, 1):
            for layout in ("paper", "parts"):
                cassmail_run(args, ["layouts"], 1, 1, "ONE", size, layout=layout, copies=copies)


def restore_pop_store(system, ring, node1, pristine_node, maildirs, pristine_mail):
    """put back the mailboxes a drain emptied: node 1's folder (node stopped), or the Maildirs"""
    if system == "cassmail-pop3d":
        ring.stop(keep=True)
        shutil.rmtree(node1)
        shutil.copytree(pristine_node, node1, symlinks=True)
        ring.restart()
    else:
        shutil.rmtree(maildirs)
        sh("cp", "-al", pristine_mail, maildirs)


def pop3(args):
    """the same messages behind cassmail-pop3d (from Cassandra) and Dovecot (from Maildir)"""
    # --pop-layout L: the mailboxes filled in layout L (paper: every message inline; parts:
    # bodies in parts); its CSVs get a "-L" suffix, so that both layouts' figures stand side by
    # side with the plain pop3.csv of a run without the option (the paper's layout)
    tag = f"-{args.pop_layout}" if args.pop_layout else ""
    (OUT / f"pop3{tag}.csv").unlink(missing_ok=True)
    started = time.strftime("%H:%M:%S")
    users = [u.split("@")[0] for u in users_file().read_text().split()][:args.pop_users]
    sub = WORK / "pop-users.txt"
    sub.write_text("".join(f"{u}@example.com\n" for u in users))
    rabid_list = WORK / "rabid-users.txt"
    rabid_list.write_text("".join(f"{u}@example.com pw-{u}\n" for u in users))
    ring = Ring(1)
    pop = None
    dpid = None
    try:
        conf = make_schema(ring, 1, "ONE")
        for u in users:
            sh(BUILD / "cassmail-admin", "-c", conf, "passwd", "--iterations", str(args.pop_iterations),
               u, input=f"pw-{u}\n", text=True, stdout=subprocess.DEVNULL)
        # Postal's messages (what rabid expects to read), through cassmail-smtpd
        log(f"filling {len(users)} mailboxes: Postal (200 KB-2 MB) through cassmail-smtpd, {args.pop_fill} s")
        smtpd = Smtpd(ring, 1, 1, "ONE", "pop3-fill", **LAYOUTS[args.pop_layout or "paper"])
        fill = subprocess.Popen(["postal", "-M", "200", "-m", "2048", "-t", "4",
                                 f"[127.0.0.1]{smtpd.port}", str(sub)], cwd=WORK,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.pop_fill)
        stop_process(fill, signal.SIGINT, 20)
        time.sleep(2)
        smtpd.stop()
        # the same messages, octet for octet, into one Maildir per user for Dovecot
        maildirs = WORK / "dovecot" / "mail"
        shutil.rmtree(maildirs, ignore_errors=True)
        total = 0
        for u in users:
            for s in ("cur", "new", "tmp"):
                (maildirs / u / s).mkdir(parents=True, exist_ok=True)
            listing = sh(BUILD / "cassmail-admin", "-c", conf, "list", u, "inbox",
                         capture_output=True, text=True).stdout.split("\n")
            for k, line in enumerate(x for x in listing if x.strip()):
                msgid = line.split()[0]
                body = sh(BUILD / "cassmail-admin", "-c", conf, "fetch", u, "inbox", msgid,
                          capture_output=True).stdout
                (maildirs / u / "cur" / f"{1700000000 + k}.M{k}P1.bench,S={len(body)}:2,").write_bytes(body)
                total += 1
        sh("chown", "-R", "nobody:nogroup", maildirs)
        log(f"{total} messages copied from Cassandra into {len(users)} Maildirs")
        passwd = WORK / "dovecot" / "passwd"
        passwd.write_text("".join(f"{u}:pw-{u}\n" for u in users))
        pconf = write_conf(WORK / "pop3d.conf", [node(1)], 1, "ONE")
        pop, pport = pop3d_start(pconf)
        creds = [(u, f"pw-{u}") for u in users]
        # pristine copies for the rabid drains, which delete what they read: the node's folder
        # (taken while the node is stopped) and the Maildirs (hard links: Dovecot unlinks)
        ring.stop(keep=True)
        node1 = WORK.parent / "cluster" / "node1"
        pristine_node = WORK / "pristine-node1"
        pristine_mail = WORK / "dovecot" / "pristine-mail"
        for d in (pristine_node, pristine_mail):
            shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(node1, pristine_node, symlinks=True)
        sh("cp", "-al", maildirs, pristine_mail)
        ring.restart()
        servers = {}
        for system in ("cassmail-pop3d", "dovecot"):
            if system == "dovecot":
                port, dpid = dovecot_start("pop3", maildirs, passwd)
                proc_pid = dpid
            else:
                port, proc_pid = pport, pop.pid
            servers[system] = (port, proc_pid)
            log(f"run: POP3 clients against {system} ({args.pop_procs} processes)")
            cpu0, busy0, t0 = proc_cpu(proc_pid), busy_seconds(), time.time()
            cass0 = ring.cpu()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            mbs, errs, msgs, total_mb = pop_load(port, creds, args.minutes, args.pop_procs)
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            client = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
            cpu = proc_cpu(proc_pid) + sum(proc_cpu(k) for k in proc_children(proc_pid)) - cpu0
            cass = ring.cpu() - cass0
            elapsed = time.time() - t0
            mean = statistics.mean(mbs) if mbs else float("nan")
            sd = statistics.stdev(mbs) if len(mbs) > 1 else float("nan")
            log(f"  => {system}: {mean:.1f} ± {sd if sd == sd else 0:.1f} MB/s, {errs} errors")
            append_row(f"pop3{tag}", dict(experiment="pop3", system=system, nodes=1, rf=1, cl="ONE",
                                    size=SIZE_LABEL["large"], threads=args.pop_procs,
                                    measured_min=len(mbs), server_mbs=mean, server_sd=sd,
                                    messages=msgs, errors=errs, started=started,
                                    other_cores=max(0.0, (busy_seconds() - busy0 - cpu - client
                                                          - cass) / elapsed),
                                    cpu_cassandra_s_per_mb=cass / max(1e-9, total_mb),
                                    cpu_server_s_per_mb=cpu / max(1e-9, total_mb),
                                    cpu_client_s_per_mb=client / max(1e-9, total_mb)))
        # rabid: drain the same mailboxes from each server, restored between drains
        (OUT / f"pop3-rabid{tag}.csv").unlink(missing_ok=True)
        logs = {"cassmail-pop3d": WORK / "pop3d.log", "dovecot": WORK / "dovecot" / "dovecot.log"}
        for k in range(1, args.pop_drains + 1):
            for system in ("cassmail-pop3d", "dovecot"):
                port, proc_pid = servers[system]
                if k > 1 or system == "cassmail-pop3d":
                    restore_pop_store(system, ring, node1, pristine_node, maildirs, pristine_mail)
                log(f"run: rabid drain {k}/{args.pop_drains} against {system} "
                    f"({args.pop_procs} processes, {total} messages)")
                cpu0, cass0, busy0 = proc_cpu(proc_pid), ring.cpu(), busy_seconds()
                kids0 = sum(proc_cpu(c) for c in proc_children(proc_pid))
                secs, octets, msgs, client = rabid_drain(system, port, rabid_list, logs[system],
                                                         total, args.pop_procs)
                cpu = proc_cpu(proc_pid) + sum(proc_cpu(c) for c in proc_children(proc_pid)) - cpu0 - kids0
                cass = ring.cpu() - cass0
                mb = octets / MB
                log(f"  => {system}: {mb / secs:.1f} MB/s ({msgs} messages, {mb:.0f} MB in {secs:.1f} s)")
                append_row(f"pop3-rabid{tag}", dict(
                    experiment="pop3-rabid", system=system, nodes=1, rf=1, cl="ONE",
                    size=SIZE_LABEL["large"], threads=args.pop_procs, measured_min=f"{secs / 60:.2f}",
                    server_mbs=mb / secs, messages=msgs, errors=total - msgs, started=time.strftime("%H:%M:%S"),
                    other_cores=max(0.0, (busy_seconds() - busy0 - cpu - client - cass) / secs),
                    cpu_server_s_per_mb=cpu / max(1e-9, mb), cpu_cassandra_s_per_mb=cass / max(1e-9, mb),
                    cpu_client_s_per_mb=client / max(1e-9, mb)))
    finally:
        if pop:
            stop_pid(pop.pid, "cassmail-pop3d")
            pop.wait()
        if dpid:
            stop_pid(dpid, "dovecot")
        ring.stop()
        for d in (WORK / "pristine-node1", WORK / "dovecot" / "pristine-mail", WORK / "dovecot" / "mail"):
            shutil.rmtree(d, ignore_errors=True)


def ensure_tools(exps):
    """install the Debian packages the experiments need when they are missing"""
    need = {"postal": "postal", "gnuplot": "gnuplot-nox"}
    if exps & {"baselines"}:
        need["postfix"] = "postfix"
    if exps & {"pop3"}:
        need.update(rabid="postal", dovecot="dovecot-pop3d")
    if exps & {"imap"}:
        need.update(dovecot="dovecot-imapd")
    missing = sorted({pkg for prog, pkg in need.items()
                      if not shutil.which(prog) and not Path("/usr/sbin", prog).exists()})
    if not missing:
        return
    log(f"installing {' '.join(missing)} (apt-get; Postfix with debconf \"No configuration\")")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh("debconf-set-selections", input="postfix postfix/main_mailer_type select No configuration\n",
       text=True)
    sh("apt-get", "install", "-y", "-q", *missing, env=env, stdout=subprocess.DEVNULL)
