"""Every list of frameworks, tables and defaults agrees with core/vocab.py, the one place that writes them."""

from __future__ import annotations

import inspect

import pytest

from wattcounts_pipeline.core import vocab
from wattcounts_pipeline.core.contracts import TABLES, load_contract


def test_every_framework_has_a_backend_and_nothing_else_does() -> None:
    from wattcounts_pipeline.backends.base import PARALLEL_REGISTRY, REGISTRY

    assert tuple(REGISTRY) == vocab.FRAMEWORKS
    assert {f for f, _ in PARALLEL_REGISTRY} <= set(vocab.FRAMEWORKS)
    assert {p for _, p in PARALLEL_REGISTRY} <= set(vocab.PARALLELISMS) - {"none"}
    assert set(vocab.QUALITY_FRAMEWORKS) <= set(vocab.FRAMEWORKS)
    assert set(vocab.LLAMACPP_FRAMEWORKS) <= set(vocab.FRAMEWORKS)


@pytest.mark.parametrize("table", ["runs", "configurations", "quality"])
def test_published_schemas_allow_exactly_the_known_frameworks(table: str) -> None:
    """The schemas are the published contract, so they spell the list out; it must be vocab's."""
    (column,) = [c for c in load_contract(table).columns if c.name == "framework"]
    assert column.allowed == vocab.FRAMEWORKS


@pytest.mark.parametrize(("table", "name"), [("quality", "source"), ("configurations", "quality_source")])
def test_published_schemas_allow_exactly_the_known_quality_sources(table: str, name: str) -> None:
    (column,) = [c for c in load_contract(table).columns if c.name == name]
    assert column.allowed == vocab.QUALITY_SOURCES
    assert vocab.RECOMMEND_QUALITY_SOURCES[: len(vocab.QUALITY_SOURCES)] == vocab.QUALITY_SOURCES


def test_submission_manifest_allows_exactly_the_known_frameworks() -> None:
    from wattcounts_pipeline.submissions.manifest import manifest_fields

    (field,) = [f for f in manifest_fields() if f.name == "specs[].framework"]
    assert field.allowed == vocab.FRAMEWORKS


def test_predictor_has_one_indicator_per_framework() -> None:
    from wattcounts_pipeline.model.features import MODEL_FEATURES

    assert [f for f in MODEL_FEATURES if f.startswith("fw_")] == [f"fw_{f}" for f in vocab.FRAMEWORKS]


def test_tables_nest() -> None:
    assert set(vocab.MEASURED_TABLES) <= set(vocab.RELEASE_TABLES) <= set(TABLES)


def test_money_and_carbon_defaults_are_the_same_everywhere() -> None:
    from wattcounts_pipeline.aggregate import aggregate
    from wattcounts_pipeline.model.costs import Costs

    params = inspect.signature(aggregate).parameters
    assert params["electricity_usd_per_kwh"].default == vocab.ELECTRICITY_USD_PER_KWH
    assert params["carbon_g_per_kwh"].default == vocab.CARBON_G_PER_KWH
    assert (Costs().electricity_per_kwh, Costs().carbon_g_per_kwh) == (vocab.ELECTRICITY_USD_PER_KWH,
                                                                       vocab.CARBON_G_PER_KWH)