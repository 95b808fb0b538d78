"""The tensor-parallel cases (tests/helpers/tp_cases.py) in a fresh interpreter.

Rank 0 is the test process itself, and torch's gloo backend leaves its threads behind there after the
process group is gone; a later test that forks (lm-eval, multiprocessing) could then deadlock in the
child, as one CI run did. Running the cases in their own pytest process keeps that away from the rest.
"""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import TESTS

CASES = TESTS / "helpers" / "tp_cases.py"


def test_tensor_parallel_cases_pass_in_their_own_process() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
                          cwd=CASES.parent.parent, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1], proc.stdout[-2000:]
