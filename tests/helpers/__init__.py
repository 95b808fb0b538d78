"""Test helpers shared by the unit, asset and end-to-end tests (no tests here)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout: experiments/, models/, data/, the package
TESTS = REPO / "tests"  # data/ (experiment files), fixtures/ (traces, a frozen release), helpers/
