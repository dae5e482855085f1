"""Short smoke runs of the libFuzzer harnesses in test/fuzz (clang, ASan, UBSan, LeakSanitizer).

Each harness first runs every seed of its corpus (test/fuzz/corpus/NAME; for SMTP also the
transcripts test/smtp/*.in), then mutates them for FUZZ_SMOKE_SECONDS (10 by default). A crash,
a sanitizer report, a leak or a broken protocol rule the harness checks makes libFuzzer exit
non-zero and leave a crash file, which fails the test with libFuzzer's report. New inputs go into
a temporary folder, never into the repository. `make fuzz FUZZ_SECONDS=N` is the long run.
"""
import os
import re
import subprocess

import pytest

from conftest import TOP, run

FUZZ = TOP / "build" / "fuzz"
NAMES = ["smtp", "pop3", "conn", "mime", "imap"]
SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "10"))
# A floor far below what the slowest harness does on a busy 2-core machine (hundreds per second).
MIN_EXECUTIONS = 200


@pytest.fixture(scope="module")
def harnesses():
    """Build (or bring up to date) build/fuzz/fuzz-* with `make fuzz-build`."""
    run(["make", "-s", "-C", str(TOP), "fuzz-build"], timeout=1800)
    return {n: FUZZ / f"fuzz-{n}" for n in NAMES}


def seeds(name):
    dirs = [TOP / "test" / "fuzz" / "corpus" / name]
    if name == "smtp":
        dirs.append(TOP / "test" / "smtp")
    return dirs


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_harness_runs_clean(harnesses, name, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seed_dirs = seeds(name)
    assert len(list(seed_dirs[0].iterdir())) >= 4, f"too few seeds for {name}"
    p = subprocess.run([str(harnesses[name]), f"-max_total_time={SECONDS}", "-print_final_stats=1",
                        "-max_len=8192", f"-artifact_prefix={tmp_path}/crash-", str(corpus),
                        *map(str, seed_dirs)],
                       capture_output=True, text=True, timeout=SECONDS * 10 + 300)
    report = p.stderr[-20000:]
    crashes = list(tmp_path.glob("crash-*")) + list(tmp_path.glob("leak-*")) + list(tmp_path.glob("timeout-*"))
    assert p.returncode == 0 and not crashes, f"fuzz-{name} exited {p.returncode}, {crashes}:\n{report}"
    m = re.search(r"stat::number_of_executed_units: (\d+)", p.stderr)
    assert m, report
    assert int(m.group(1)) >= MIN_EXECUTIONS, report
    # Every seed was run and passed the harness's checks before mutation began.
    assert re.search(r"INITED cov: \d+", p.stderr), report
