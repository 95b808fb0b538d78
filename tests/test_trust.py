"""The trust boundary (issue 26): hostile bundles rejected by name, bounded memory, inert published text,
configuration identity with hardware and source, duplicates found on content."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_bundles import CORPUS

from wattcounts_pipeline.submissions import bundle_id, ingest_bundle, pack_bundle
from wattcounts_pipeline.submissions.bundle import summarize_reasons


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_bundle_is_rejected_naming_file_row_field(name: str, tmp_path: Path) -> None:
    build, expected = CORPUS[name]
    (tmp_path / "work").mkdir()
    path = build(tmp_path / "work")
    bid = bundle_id(path)
    result = ingest_bundle(path, tmp_path / "store")
    assert result.status == "rejected"
    assert any(expected in r for r in result.reasons), result.reasons[:5]
    assert list((tmp_path / "store" / "accepted").iterdir()) == []
    report = (tmp_path / "store" / "rejected" / bid / "REPORT.md").read_text(encoding="utf-8")
    assert len(report.splitlines()) < 120 and len(report) < 100_000
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", report)


def test_corpus_covers_every_kind() -> None:
    assert len(CORPUS) >= 90
