"""The C unit tests (test/unit/test-*.c, GLib's g_test), each test case reported on its own."""
import subprocess

import pytest

from conftest import BUILD, TOP

UNIT = sorted((TOP / "test" / "unit").glob("test-*.c"))


def cases(binary):
    p = subprocess.run([str(binary), "-l"], capture_output=True, text=True, timeout=60)
    return [line.strip() for line in p.stdout.splitlines() if line.startswith("/")]


PARAMS = []
for src in UNIT:
    binary = BUILD / "test" / src.stem
    if binary.exists():
        for case in cases(binary):
            PARAMS.append(pytest.param(binary, case, id=f"{src.stem}:{case}"))
    else:
        PARAMS.append(pytest.param(binary, None, id=f"{src.stem}:not-built"))


@pytest.mark.parametrize("binary,case", PARAMS)
def test_unit(binary, case):
    assert case is not None, f"{binary} was not built"
    p = subprocess.run([str(binary), "-p", case], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
