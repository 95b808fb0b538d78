"""Render a release's dataset card (README.md) from `dataset_card/`: YAML front matter for the Hub, prose for people."""

from __future__ import annotations

from typing import Any

import jinja2
import pandas as pd
import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.contracts import Contract
from wattcounts_pipeline.core.text import markdown_safe

DEFAULT_CONFIG = "configurations"
TOP_N = 10


def load_card_data() -> dict[str, Any]:
    """The static card data (`dataset_card/card.yaml`): licence, tags, limitations, citation."""
    return yaml.safe_load((paths.DATASET_CARD_DIR / "card.yaml").read_text(encoding="utf-8"))


def front_matter(frames: dict[str, pd.DataFrame], contracts: dict[str, Contract], card: dict[str, Any],
                 num_bytes: dict[str, int]) -> dict:
    """Hub metadata: one config per table with its data file, and features straight from the contracts."""
    names = list(frames)
    return {
        "pretty_name": card["pretty_name"],
        "license": card["license"],
        "language": card["language"],
        "task_categories": card["task_categories"],
        "tags": card["tags"],
        "size_categories": [_size_category(max(len(f) for f in frames.values()))],
        "configs": [
            {"config_name": name, **({"default": True} if name == DEFAULT_CONFIG else {}),
             "data_files": [{"split": "train", "path": f"data/{name}.parquet"}]}
            for name in names
        ],
        "dataset_info": [
            {"config_name": name,
             "features": [{"name": col, **spec} for col, spec in contracts[name].hf_features().items()],
             "splits": [{"name": "train", "num_bytes": num_bytes[name], "num_examples": len(frames[name])}]}
            for name in names
        ],
    }


def render_card(frames: dict[str, pd.DataFrame], contracts: dict[str, Contract], version: str,
                context: dict[str, Any], num_bytes: dict[str, int]) -> str:
    """README.md of a release; `context` entries other than `repo_id` are listed as release facts.

    `num_bytes` is each table's in-memory Arrow size, which `datasets` expects in the split metadata.
    """
    card = load_card_data()
    # Markdown, not HTML: HTML autoescaping would mangle the card; every value that comes from rows (contributed
    # ones included) goes through `_cell`, which leaves it inert Markdown.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths.DATASET_CARD_DIR), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False)
    configurations = frames[DEFAULT_CONFIG]
    method_counts = configurations["energy_method"].value_counts()
    source_counts = (configurations["quality_source"].value_counts() if "quality_source" in configurations
                     else pd.Series(dtype=int))
    return env.get_template("template.md").render(
        front_matter=yaml.safe_dump(front_matter(frames, contracts, card, num_bytes), sort_keys=False,
                                    allow_unicode=True),
        card=card,
        version=version,
        repo_id=context.get("repo_id", card["default_repo_id"]),
        facts={_cell(k): _cell(v) for k, v in context.items() if k != "repo_id"},
        tables=[{"name": name, "default": name == DEFAULT_CONFIG, "rows": len(frames[name]),
                 "description": contracts[name].description, "schema_version": contracts[name].version,
                 "columns_markdown": contracts[name].markdown_table()} for name in frames],
        energy_methods=[{"name": m, "rows": int(method_counts.get(m, 0)), "meaning": meaning}
                        for m, meaning in card["energy_methods"].items()],
        quality_sources=[{"name": s, "rows": int(source_counts.get(s, 0)), "meaning": meaning}
                         for s, meaning in card["quality_sources"].items()],
        hardware_table=markdown_table(hardware_summary(configurations)),
        top_n=TOP_N,
        top_table=markdown_table(top_configurations(configurations, TOP_N)),
        has_quality_figure=bool(configurations["quality_acc_mean"].notna().any()),
        load_curves_table=markdown_table(load_curve_summary(frames["load_points"])) if "load_points" in frames else "",
    )


def load_curve_summary(load_points: pd.DataFrame) -> pd.DataFrame:
    """One row per serving sweep: what was served, the load range, the lowest J/request and the capacity."""
    out = []
    for _, points in load_points.groupby("sweep_id", sort=True):
        first = points.iloc[0]
        level = points["users"] if first["load_mode"] == "closed" else points["offered_rate_per_s"]
        unit = "users" if first["load_mode"] == "closed" else "req/s"
        best = points.loc[points["energy_per_request_j"].idxmin()]
        out.append({"model": first["model"], "quantization": first["quantization"], "server": first["server"],
                    "workload": first["workload"], "hardware": first["hardware_id"],
                    "load": f"{level.min():g}–{level.max():g} {unit}",
                    "capacity req/s": f"{points['achieved_rate_per_s'].max():.3g}",
                    "min J/request": f"{best['energy_per_request_j']:.4g}",
                    "p90 TPOT there s": "—" if pd.isna(best["tpot_p90_s"]) else f"{best['tpot_p90_s']:.3g}",
                    "energy_method": first["energy_method"]})
    return pd.DataFrame(out)


def hardware_summary(configurations: pd.DataFrame) -> pd.DataFrame:
    """One row per machine present in the release."""
    keys = ["hardware_id", "gpu_name", "gpu_count", "cpu_model"]
    hw = configurations[keys].astype(object).fillna("—")
    return (hw.groupby(keys, sort=True).size().rename("configurations").reset_index())


def top_configurations(configurations: pd.DataFrame, n: int) -> pd.DataFrame:
    """The `n` configurations with the lowest gross J/token, with their CI and speed."""
    top = configurations.sort_values(["energy_per_token_j", "configuration_id"]).head(n)
    ci = [f"{lo:.4g}–{hi:.4g}" if pd.notna(lo) and pd.notna(hi) else "—"
          for lo, hi in zip(top["energy_per_token_j_ci95_low"], top["energy_per_token_j_ci95_high"], strict=True)]
    return pd.DataFrame({
        "model": top["model"], "weights": top["weights"], "quantization": top["quantization"],
        "framework": top["framework"], "batch": top["batch_size"], "hardware": top["hardware_id"],
        "J/token": top["energy_per_token_j"].map("{:.4g}".format), "95% CI": ci,
        "tokens/s": top["tokens_per_s"].map("{:.4g}".format), "energy_method": top["energy_method"],
    })


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes escaped), or a note when the frame is empty."""
    if frame.empty:
        return "*(none)*"
    lines = ["| " + " | ".join(map(_cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A table cell that renders as the text it holds: no HTML, link, control character or runaway length."""
    return markdown_safe(value)


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if rows < limit:
            return label
    return "10M<n<100M"
