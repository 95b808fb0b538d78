"""The synthetic configurations generator the predictor's tests train on conforms to the table contract."""

from __future__ import annotations

from tests.helpers.model_fixtures import make_configurations
from wattcounts_pipeline.core.contracts import load_contract


def test_fixture_conforms_to_the_contract() -> None:
    frame = make_configurations(20)
    load_contract("configurations").pandera_schema().validate(frame, lazy=True)
    assert (frame["tokens_per_s"] > 0).all()
