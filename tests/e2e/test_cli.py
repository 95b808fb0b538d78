"""One `wattcounts` command: every subcommand registers without heavy imports, so a GPU host that has only the
measuring dependencies (no Dagster, Pandera or scikit-learn) runs `python3 -m wattcounts_pipeline.cli sweep`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from wattcounts_pipeline.cli import main

ROOT = REPO
BLOCKED = ("dagster", "pandera", "sklearn", "datasets", "huggingface_hub", "lm_eval", "torch")


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where importing any of BLOCKED raises ImportError."""
    prelude = f"import sys\nfor m in {BLOCKED!r}:\n    sys.modules[m] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def test_help_lists_every_subcommand_without_heavy_imports():
    proc = _run_blocked("from wattcounts_pipeline.cli import main\nmain(['--help'])")
    assert proc.returncode == 0, proc.stderr
    for command in ("register", "measure", "sweep", "pack", "submit", "bundle", "train", "recommend"):
        assert command in proc.stdout


def test_sweep_runs_without_dagster_or_pandera(tmp_path):
    """The lent-GPU path: the sweep command loads its experiment, meters and store with the asset layer
    unimportable (no spec matches, so nothing is measured and no backend loads)."""
    experiment = ROOT / "experiments" / "default.yaml"
    out = tmp_path / "sweep"
    proc = _run_blocked("from wattcounts_pipeline.cli import main\n"
                        f"sys.exit(main(['sweep', {str(experiment)!r}, '--out', {str(out)!r}, "
                        "'--only', 'no-such-key', '--meter', 'estimate']))")
    assert proc.returncode == 0, proc.stderr
    assert '"measured": 0' in proc.stdout


def test_blocked_import_really_fails():
    """The harness above proves something only if a blocked module cannot be imported."""
    proc = _run_blocked("import dagster")
    assert proc.returncode != 0 and "import of dagster halted" in proc.stderr


def test_unknown_subcommand_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version_and_json_on_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("wattcounts 0.")
    import argparse

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    from wattcounts_pipeline.cli import SUBCOMMAND_MODULES

    for module in SUBCOMMAND_MODULES:
        __import__(module, fromlist=["register"]).register(subparsers)
    for name, sub in subparsers.choices.items():
        assert "--json" in sub._option_string_actions, f"{name} has no --json"


def test_bad_input_exits_2_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["measure", "--model", "gemma3-270m", "--repetitions", "three"])
    assert exc.value.code == 2 and "--repetitions" in capsys.readouterr().err
