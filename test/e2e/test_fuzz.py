"""Short smoke runs of the libFuzzer harnesses in test/fuzz (clang, ASan, UBSan, LeakSanitizer).

Each harness first runs every seed of its corpus (test/fuzz/corpus/NAME; for SMTP also the
transcripts test/smtp/*.in), then mutates them for FUZZ_SMOKE_SECONDS (10 by default). A crash,
a sanitizer report, a leak or a broken protocol rule the harness checks makes libFuzzer exit
non-zero and leave a crash file, which fails the test with libFuzzer's report. New inputs go into
a temporary folder, never into the repository. `make fuzz FUZZ_SECONDS=N` is the long run.

The harnesses run at the same time (each is one process on one core; they share none of their
files), so the smoke run takes FUZZ_SMOKE_SECONDS once, not once per harness; each test then
judges its harness's run.
"""
import os
import re
import subprocess

import pytest

from conftest import TOP, run

FUZZ = TOP / "build" / "fuzz"
NAMES = ["smtp", "pop3", "conn", "mime", "imap"]
SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "10"))
# A floor far below what the slowest harness does on a busy 2-core machine (hundreds per second),
# with all five sharing it.
MIN_EXECUTIONS = 200


def seeds(name):
    dirs = [TOP / "test" / "fuzz" / "corpus" / name]
    if name == "smtp":
        dirs.append(TOP / "test" / "smtp")
    return dirs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (exit status, stderr, folder)} of every harness's smoke run, all run at once after
    `make fuzz-build` has built (or brought up to date) build/fuzz/fuzz-*."""
    run(["make", "-s", "-C", str(TOP), "fuzz-build"], timeout=1800)
    started = {}
    for name in NAMES:
        folder = tmp_path_factory.mktemp(f"fuzz-{name}")
        corpus = folder / "corpus"
        corpus.mkdir()
        err = open(folder / "stderr", "w+")
        proc = subprocess.Popen([str(FUZZ / f"fuzz-{name}"), f"-max_total_time={SECONDS}",
                                 "-print_final_stats=1", "-max_len=8192",
                                 f"-artifact_prefix={folder}/crash-", str(corpus),
                                 *map(str, seeds(name))],
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        started[name] = (proc, err, folder)
    out = {}
    try:
        for name, (proc, err, folder) in started.items():
            proc.wait(timeout=SECONDS * 10 + 300)
            err.seek(0)
            out[name] = (proc.returncode, err.read(), folder)
    finally:
        for proc, err, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err.close()
    return out


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_harness_runs_clean(runs, name):
    seed_dirs = seeds(name)
    assert len(list(seed_dirs[0].iterdir())) >= 4, f"too few seeds for {name}"
    rc, stderr, folder = runs[name]
    report = stderr[-20000:]
    crashes = list(folder.glob("crash-*")) + list(folder.glob("leak-*")) + list(folder.glob("timeout-*"))
    assert rc == 0 and not crashes, f"fuzz-{name} exited {rc}, {crashes}:\n{report}"
    m = re.search(r"stat::number_of_executed_units: (\d+)", stderr)
    assert m, report
    assert int(m.group(1)) >= MIN_EXECUTIONS, report
    # Every seed was run and passed the harness's checks before mutation began.
    assert re.search(r"INITED cov: \d+", stderr), report
