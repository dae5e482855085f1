"""cassbench.report - the results in docs/bench: one CSV row per run (NAME.csv), the figures drawn
from them by gnuplot (NAME.png) and docs/bench/tables.md, every figure's numbers beside the
paper's."""
import csv
import statistics

from .common import OUT, log, sh

# the columns of every experiment's CSV (one row per run)
FIELDS = ["experiment", "system", "nodes", "rf", "cl", "size", "threads", "measured_min",
          "postal_mbs", "postal_sd", "server_mbs", "server_sd", "messages", "errors",
          "cpu_server_s_per_mb", "cpu_cassandra_s_per_mb", "cpu_client_s_per_mb", "other_cores",
          "started", "delivered_mbs"]
# layouts.csv: the same, and which layout, how many mailboxes per message, and what Cassandra
# wrote to disk (/proc/PID/io write_bytes: commit log, flushes, compactions) per MB of mail
LAYOUT_FIELDS = FIELDS + ["layout", "copies", "cassandra_written_mb_per_mb"]
# the CSVs with those columns
LAYOUT_CSVS = ("layouts", "baselines")
# fig6-minutes.csv: one row per minute of each fig6 run (CL, Postal threads)
FIG6_FIELDS = ["cl", "threads", "minute", "postal_mbs", "server_mbs", "messages", "errors",
               "accepted", "refused"]


def fig6_minutes():
    """the rows of fig6-minutes.csv (a file from before the threads column: Postal's default 8)"""
    path = OUT / "fig6-minutes.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [dict(r, threads=r.get("threads") or "8") for r in csv.DictReader(f)]


# --baseline-runs: CassMail as LAYOUT:MAILBOXES, "postfix", "ceiling"; in the order run, so that
# the defaults and Postfix, the pair the headline ratio compares, run back to back
BASELINE_RUNS = ["parts:1", "postfix", "paper:2", "paper:1", "parts:2", "ceiling"]


def baseline_run_key(row):
    """the --baseline-runs name of a baselines.csv row"""
    if row["system"] == "cassmail":
        return f"{row.get('layout') or 'paper'}:{row.get('copies') or 2}"
    return row["system"]


def fmt(x):
    if isinstance(x, float):
        return "" if x != x else f"{x:.3f}"
    return str(x)


def append_row(name, row):
    path = OUT / f"{name}.csv"
    new = not path.exists()
    fields = LAYOUT_FIELDS if name in LAYOUT_CSVS else FIELDS
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if new:
            w.writeheader()
        w.writerow({k: fmt(row.get(k, "")) for k in fields})


def keep_rows(name, keep):
    """rewrite NAME.csv with only the rows for which KEEP(row) is true (none: the file goes)"""
    path = OUT / f"{name}.csv"
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if keep(r)]
    if not rows:
        path.unlink()
        return
    fields = LAYOUT_FIELDS if name in LAYOUT_CSVS else FIELDS
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in fields} for r in rows)


def write_fig6_minutes(rows):
    """fig6-minutes.csv: ROWS (dicts of FIG6_FIELDS), all of them"""
    with open(OUT / "fig6-minutes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIG6_FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in FIG6_FIELDS} for r in rows)


def keep_csv_rows(path, keep):
    """rewrite the CSV at PATH (if there is one) with its header and the rows (lists) for which
    KEEP(row) is true"""
    if path.exists():
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows[:1] + [r for r in rows[1:] if keep(r)])


def append_csv(path, header, rows):
    """append ROWS to the CSV at PATH, HEADER first when the file is new"""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------------------------------------
# plots (gnuplot)


def fig6_series(rows):
    """the (CL, threads) pairs of fig6-minutes.csv: ONE before ALL, fewer threads first"""
    return sorted({(r["cl"], r["threads"]) for r in rows}, key=lambda p: (p[0] != "ONE", int(p[1])))


def read_csv(name):
    path = OUT / f"{name}.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def by_nodes(name):
    """the rows of NAME.csv and their ring sizes, smallest first"""
    rows = read_csv(name)
    return rows, sorted({int(r["nodes"]) for r in rows})


def gnuplot(name, script):
    (OUT / f"{name}.gp").write_text(script)
    sh("gnuplot", OUT / f"{name}.gp", cwd=OUT)
    (OUT / f"{name}.gp").unlink()
    log(f"wrote {OUT / name}.png")


def bars(name, title, columns, rows, xlabel, ylabel="aggregate throughput (MB/s, server-side)"):
    """grouped bars with error bars: ROWS = [(x, [(mean, sd) or None per column])]"""
    dat = OUT / f"{name}.dat"
    with open(dat, "w") as f:
        for x, vals in rows:
            f.write(str(x) + " " + " ".join(f"{v[0]:.3f} {v[1]:.3f}" if v else "- -" for v in vals) + "\n")
    plots = ", ".join(f"'{dat.name}' using {2 + 2 * k}:{3 + 2 * k}:xtic(1) title '{c}'"
                      for k, c in enumerate(columns))
    gnuplot(name, f"""set terminal pngcairo size 800,500
set output '{name}.png'
set title '{title}'
set datafile missing '-'
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set xlabel '{xlabel}'
set ylabel '{ylabel}'
set yrange [0:*]
set key below horizontal
plot {plots}
""")
    dat.unlink()


def pick(rows, **kw):
    for r in rows:
        if all(str(r[k]) == str(v) for k, v in kw.items()):
            return float(r["server_mbs"]), float(r["server_sd"] or 0)
    return None


def plots(_args=None):
    r3, ns = by_nodes("fig3")
    if r3:
        bars("fig3", "Fig. 3: throughput for different replication factors (CL ONE, 200KB-2MB)",
             ["RF 1", "RF 2", "RF 3"],
             [(n, [pick(r3, nodes=n, rf=rf) for rf in (1, 2, 3)]) for n in ns], "ring size (nodes)")
    r4, ns = by_nodes("fig4")
    if r4:
        bars("fig4", "Fig. 4: throughput for different consistency levels (200KB-2MB)",
             ["RF 2, ONE", "RF 2, ALL", "RF 3, ONE", "RF 3, ALL"],
             [(n, [pick(r4, nodes=n, rf=rf, cl=cl) for rf in (2, 3) for cl in ("ONE", "ALL")])
              for n in ns], "ring size (nodes)")
    r5, ns = by_nodes("fig5")
    if r5:
        bars("fig5", "Fig. 5: throughput for different message sizes (RF 1, CL ONE)",
             ["200KB-2MB", "50KB-500KB"],
             [(n, [pick(r5, nodes=n, size=s) for s in ("200KB-2MB", "50KB-500KB")]) for n in ns],
             "ring size (nodes)")
    rows = fig6_minutes()
    if rows:
        series = fig6_series(rows)
        lines = []
        for k, (cl, t) in enumerate(series):
            (OUT / f"fig6-{cl}-{t}.dat").write_text("".join(
                f"{r['minute']} {r['server_mbs']} {r['postal_mbs']}\n"
                for r in rows if (r["cl"], r["threads"]) == (cl, t)))
            lines.append(f"'fig6-{cl}-{t}.dat' using 1:2 with linespoints pt {5 if cl == 'ONE' else 7} "
                         f"dt {1 + k // 2} title 'CL {cl}, {t} Postal threads'")
        gnuplot("fig6", """set terminal pngcairo size 800,500
set output 'fig6.png'
set title 'Fig. 6: 8 nodes, RF 2, SMTP on 4; Cassandra-only node 8 SIGKILLed after minute 3'
set xlabel 'minute'
set ylabel 'aggregate throughput (MB/s, server-side)'
set yrange [0:*]
set xtics 1
set arrow from 3.5,graph 0 to 3.5,graph 1 nohead dt 2
set key below horizontal
plot """ + ", \\\n     ".join(lines) + "\n")
        for cl, t in series:
            (OUT / f"fig6-{cl}-{t}.dat").unlink()
    rb = read_csv("baselines")
    if rb:
        def cm(size, layout, copies):
            return next((pick([r], system="cassmail", size=size) for r in rb
                         if r["system"] == "cassmail" and r["size"] == size
                         and baseline_run_key(r) == f"{layout}:{copies}"), None)
        bars("baselines", "Single node: CassMail vs Postfix vs the storage ceiling",
             ["CassMail: parts, 1 mailbox (defaults)", "CassMail: the paper layout, 2 mailboxes",
              "Postfix (Maildir)", "storage ceiling (no SMTP)"],
             [(s.replace("KB", "K").replace("MB", "M"),
               [cm(s, "parts", 1), cm(s, "paper", 2), pick(rb, system="postfix", size=s),
                pick(rb, system="ceiling", size=s)])
              for s in ("200KB-2MB", "50KB-500KB")], "message sizes")
    rp, rr = read_csv("pop3"), read_csv("pop3-rabid")
    if rp or rr:
        def drains(system):
            v = [float(r["server_mbs"]) for r in rr if r["system"] == system]
            return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else None
        rows = [(system, [pick(rp, system=system), drains(system)])
                for system in ("cassmail-pop3d", "dovecot")]
        bars("pop3", "POP3: the same 200KB-2MB messages, cassmail-pop3d vs Dovecot",
             ["8 poplib clients, read only (client-side)", "rabid drain: retrieve + delete (server-side)"],
             rows, "server", ylabel="download throughput (MB/s)")


# ---------------------------------------------------------------------------------------------
# tables (docs/bench/tables.md): the measured numbers beside the paper's, as ratios


def tables(_args=None):
    """docs/bench/tables.md from the CSVs: one table per figure and baseline, with the paper's
    figure (section 5) where it gives one, and the ratios that carry over to one machine"""
    def num(r, k="server_mbs"):
        return float(r[k]) if r and r.get(k) not in (None, "") else float("nan")

    def one(rows, **kw):
        for r in rows:
            if all(str(r[k]) == str(v) for k, v in kw.items()):
                return r
        return None

    def f(x, d=1):
        return "—" if x != x else f"{x:.{d}f}"

    def mbs(r):
        return "—" if not r else f"{num(r):.1f} ± {num(r, 'server_sd'):.1f}"

    out = ["# Benchmark tables", "",
           "Generated by `tools/bench/run tables` from the CSVs in this folder. MB/s are the servers'",
           "own counts (MB = 2^20 octets), mean ± standard deviation of 15-second bins of the measured",
           "minutes; the paper's figures are from its section 5.", ""]
    rb = read_csv("baselines")
    if rb:
        out += ["## Single node: CassMail, Postfix, the storage ceiling", "",
                "| system | sizes | MB/s | Postal's MB/s | messages | server CPU s/MB | Cassandra CPU s/MB | Cassandra MB written/MB | Postal CPU s/MB | other cores |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        names = {"parts:1": "CassMail: parts, 1 mailbox a message (defaults)",
                 "postfix": "Postfix, queued (its 250)",
                 "paper:2": "CassMail: paper's layout, 2 mailboxes (paper's workload)",
                 "paper:1": "CassMail: paper's layout, 1 mailbox",
                 "parts:2": "CassMail: parts, 2 mailboxes",
                 "ceiling": "storage ceiling (cassmail-load: paper's layout, 2 mailboxes)"}

        def row(key, size):
            return next((r for r in rb if r["size"] == size and baseline_run_key(r) == key), None)
        for size in ("200KB-2MB", "50KB-500KB"):
            for key in BASELINE_RUNS:
                r = row(key, size)
                if r:
                    out.append(f"| {names[key]} | {size} | {mbs(r)} | {f(num(r, 'postal_mbs'))} | "
                               f"{r['messages']} | {f(num(r, 'cpu_server_s_per_mb'), 3)} | "
                               f"{f(num(r, 'cpu_cassandra_s_per_mb'), 3)} | "
                               f"{f(num(r, 'cassandra_written_mb_per_mb'), 2)} | {f(num(r, 'cpu_client_s_per_mb'), 3)} | "
                               f"{f(num(r, 'other_cores'), 2)} |")
                    if key == "postfix" and r.get("delivered_mbs"):
                        out.append(f"| Postfix, delivered into Maildir | {size} | {f(num(r, 'delivered_mbs'))} | | | | | | | |")
        out += ["", "| ratio | 200KB-2MB | 50KB-500KB | paper |", "|---|---|---|---|"]

        def ratio(a, b, size):
            return num(row(a, size)) / num(row(b, size))

        def both(a, b):
            return f"{f(ratio(a, b, '200KB-2MB'), 2)} | {f(ratio(a, b, '50KB-500KB'), 2)}"
        out.append(f"| CassMail (defaults) / Postfix | {both('parts:1', 'postfix')} | — |")
        out.append(f"| CassMail (paper's layout and workload) / Postfix | {both('paper:2', 'postfix')} | 15/40 = 0.38, 10/25 = 0.40 |")
        out.append(f"| parts / paper's layout, 2 mailboxes | {both('parts:2', 'paper:2')} | — |")
        out.append(f"| parts / paper's layout, 1 mailbox | {both('parts:1', 'paper:1')} | — |")
        out.append(f"| cassmail-smtpd (paper's layout, 2 mailboxes) / storage ceiling | {both('paper:2', 'ceiling')} | — |")
        out.append(f"| CassMail (paper's layout, 2 mailboxes), 50KB-500KB / 200KB-2MB | "
                   f"{f(num(row('paper:2', '50KB-500KB')) / num(row('paper:2', '200KB-2MB')), 2)} | | 10/15 = 0.67 |")
        out.append("")
    r3, ns = by_nodes("fig3")
    if r3:
        out += ["## Figure 3: ring size and replication factor (CL ONE, 200KB-2MB)", "",
                "| nodes | RF 1 | RF 2 | RF 3 | RF 2 / RF 1 | RF 3 / RF 1 | Cassandra CPU s/MB, RF 1 / 2 / 3 | paper, RF 1 |",
                "|---|---|---|---|---|---|---|---|"]
        paper = {1: "15", 8: "55"}
        for n in ns:
            rr = [one(r3, nodes=n, rf=rf) for rf in (1, 2, 3)]
            base = num(rr[0])
            out.append(f"| {n} | {mbs(rr[0])} | {mbs(rr[1])} | {mbs(rr[2])} | "
                       f"{f(num(rr[1]) / base, 2) if rr[1] else '—'} | {f(num(rr[2]) / base, 2) if rr[2] else '—'} | "
                       + " / ".join(f(num(r, 'cpu_cassandra_s_per_mb'), 3) if r else "—" for r in rr)
                       + f" | {paper.get(n, '—')} |")
        out += ["", "Paper: each extra replica costs 5–10 % (RF 2 / RF 1 ≈ 0.90–0.95); 15 → 55 MB/s from 1 to 8 nodes.", ""]
    r4, ns = by_nodes("fig4")
    if r4:
        out += ["## Figure 4: consistency level (200KB-2MB)", "",
                "| nodes | RF 2 ONE | RF 2 ALL | ALL / ONE, RF 2 | RF 3 ONE | RF 3 ALL | ALL / ONE, RF 3 |",
                "|---|---|---|---|---|---|---|"]
        for n in ns:
            cells = []
            for rf in (2, 3):
                a, b = one(r4, nodes=n, rf=rf, cl="ONE"), one(r4, nodes=n, rf=rf, cl="ALL")
                cells += [mbs(a), mbs(b), f(num(b) / num(a), 2) if a and b else "—"]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out += ["", "Paper: ALL costs about 35 % at RF 2 (50 → 30 MB/s at 8 nodes, ALL / ONE ≈ 0.65) and 45–50 % at RF 3 (≈ 0.50–0.55).", ""]
    r5, ns = by_nodes("fig5")
    if r5:
        out += ["## Figure 5: message sizes (RF 1, CL ONE)", "",
                "| nodes | 200KB-2MB | 50KB-500KB | small / large | difference (MB/s) |", "|---|---|---|---|---|"]
        for n in ns:
            a, b = one(r5, nodes=n, size="200KB-2MB"), one(r5, nodes=n, size="50KB-500KB")
            out.append(f"| {n} | {mbs(a)} | {mbs(b)} | {f(num(b) / num(a), 2) if a and b else '—'} | "
                       f"{f(num(a) - num(b)) if a and b else '—'} |")
        out += ["", "Paper: about 5 MB/s less for the small messages at every ring size (10 vs 15 at one node, 0.67).", ""]
    rows = fig6_minutes()
    if rows:
        ks = sorted({int(r["minute"]) for r in rows})
        out += ["## Figure 6: a Cassandra-only node SIGKILLed after minute 3 (8 nodes, RF 2, SMTP on 4)", "",
                "MB/s per minute (server-side); where counted, the messages stored and answered 451 in each minute.", "",
                "| minute | " + " | ".join(str(k) for k in ks) + " |", "|---|" + "---|" * len(ks)]
        series = fig6_series(rows)
        for cl, t in series:
            sel = {int(r["minute"]): r for r in rows if (r["cl"], r["threads"]) == (cl, t)}
            out.append(f"| CL {cl}, {t} threads (MB/s) | "
                       + " | ".join(f(float(sel[k]["server_mbs"])) if k in sel else "—" for k in ks) + " |")
            if any(sel[k].get("accepted") for k in sel):
                out.append(f"| CL {cl}, {t} threads: stored / 451 | " + " | ".join(
                    f"{sel[k]['accepted']} / {sel[k]['refused']}" if k in sel else "—" for k in ks) + " |")
        for cl, t in series:
            v = {int(r["minute"]): float(r["server_mbs"]) for r in rows if (r["cl"], r["threads"]) == (cl, t)}
            before = [v[k] for k in (1, 2, 3) if k in v]
            if before and 4 in v:
                b = statistics.mean(before)
                after = [v[k] for k in ks if k >= 5 and k in v]
                out.append(f"\nCL {cl}, {t} threads: minute 4 / mean of minutes 1–3 = {f(v[4] / b, 2)}; "
                           f"minutes 5–{ks[-1]} / minutes 1–3 = {f(statistics.mean(after) / b, 2) if after else '—'}"
                           f" (paper: {'no visible effect' if cl == 'ONE' else 'about −25 % for one minute, 0.75, then back'}).")
        out.append("")
    rp, rr = read_csv("pop3"), read_csv("pop3-rabid")
    if rp or rr:
        out += ["## POP3: cassmail-pop3d and Dovecot, the same messages", "",
                "| server | 8 poplib clients, read only (MB/s, client-side) | rabid drains (MB/s, server-side) | server CPU s/MB (poplib) | Cassandra CPU s/MB (poplib) |",
                "|---|---|---|---|---|"]
        for system in ("cassmail-pop3d", "dovecot"):
            a = one(rp, system=system)
            d = [float(r["server_mbs"]) for r in rr if r["system"] == system]
            dtext = (f"{statistics.mean(d):.1f} ± {statistics.stdev(d):.1f} ({len(d)} drains)" if len(d) > 1
                     else (f"{d[0]:.1f} (1 drain)" if d else "—"))
            out.append(f"| {system} | {mbs(a)} | {dtext} | {f(num(a, 'cpu_server_s_per_mb'), 3)} | "
                       f"{f(num(a, 'cpu_cassandra_s_per_mb'), 3)} |")

        def mean_of(system):
            v = [float(r["server_mbs"]) for r in rr if r["system"] == system]
            return statistics.mean(v) if v else float("nan")
        out += ["", f"cassmail-pop3d / Dovecot: {f(num(one(rp, system='cassmail-pop3d')) / num(one(rp, system='dovecot')), 2)} "
                f"(poplib), {f(mean_of('cassmail-pop3d') / mean_of('dovecot'), 2)} (rabid).", ""]
    rt = read_csv("threads")
    if rt:
        out += ["## Postal threads against one node (RF 1, ONE, 200KB-2MB)", "", "| threads | MB/s |", "|---|---|"]
        out += [f"| {r['threads']} | {mbs(r)} |" for r in rt]
        out.append("")
    (OUT / "tables.md").write_text("\n".join(out) + "\n")
    log(f"wrote {OUT / 'tables.md'}")

