"""The public explorer: one self-contained HTML page built from a dataset release (issue #24).

`build_explorer` reads a release folder (hub/release.py's layout) and writes `index.html` (leaderboard with
filters, the quality-vs-energy and cost fronts, each configuration's provenance, a recommend form) and a
`README.md` whose front matter makes the folder a static Hugging Face Space. Everything the page shows comes
from the release's tables; nothing is fetched: data, script and style are inlined, and the page's Content
Security Policy allows only those (by hash) and no network request at all.

Contributed rows are untrusted text, so the data travels as JSON in a `<script type="application/json">` with
`<`, `>` and `&` escaped (no `</script>` can close it), and the script inserts text with textContent only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wattcounts_pipeline.core import atomic

STATIC_DIR = Path(__file__).resolve().parent / "explorer_static"
INDEX = "index.html"
SPACE_README = "README.md"

# The configurations columns the page uses; a column an older release lacks (schema v1 had no quality source
# or CI) is shown as unknown, never invented.
ROW_COLUMNS = (
    "configuration_id", "model", "weights", "architecture", "quantization", "framework", "dtype",
    "engine_args_json", "workload", "batch_size", "input_tokens", "output_tokens", "hardware_id", "gpu_name",
    "gpu_count", "parallelism", "n_runs", "energy_per_token_j", "energy_per_token_j_ci95_low",
    "energy_per_token_j_ci95_high", "energy_per_token_net_j", "tokens_per_s", "ttft_p50_s", "tpot_p50_s",
    "e2e_p50_s", "mean_power_w", "cost_per_1m_tokens_usd", "co2_per_1m_tokens_g", "quality_tasks",
    "quality_acc_mean", "quality_source", "quality_acc_ci95_low", "quality_acc_ci95_high", "energy_method",
    "source",
)
# Per-configuration facts aggregated from the runs table: how long the measured windows lasted and how far
# apart the repetitions started (window + cool-down + any prefill-only window).
RUN_COLUMNS = ("window_s_min", "window_s_median", "window_s_max", "repeat_interval_s", "energy_flags")
REQUIRED = ("configuration_id", "model", "framework", "workload", "hardware_id", "energy_per_token_j")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def build_explorer(release_dir: Path, out_dir: Path, recommendations: list[dict[str, Any]] | None = None) -> Path:
    """Write the explorer of the release in `release_dir` to `out_dir/index.html` (and the Space's README.md);
    return the page's path.

    `recommendations` are answers precomputed by the caller (a static page cannot run the predictor): one per
    hardware × scenario, each `{"hardware", "scenario", "source", "best": {name: value} | None, "warnings":
    [...], "unmet": "..."}`. Without them the page's form picks among the measured rows only, and says so.
    """
    version, rows = load_release_rows(release_dir)
    page = render_explorer(version, rows, recommendations)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / INDEX
    for path, text in ((index, page), (out_dir / SPACE_README, space_readme(version, len(rows)))):
        with atomic.atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return index


def load_release_rows(release_dir: Path) -> tuple[str, list[dict[str, Any]]]:
    """(version, one JSON-ready dict per configuration) of a release folder, with the runs' window facts."""
    manifest = release_dir / "release.json"
    version = str(json.loads(manifest.read_text(encoding="utf-8"))["version"]) if manifest.is_file() \
        else release_dir.name
    configs = pd.read_parquet(release_dir / "data" / "configurations.parquet")
    missing = [c for c in REQUIRED if c not in configs]
    if missing:
        raise ValueError(f"{release_dir}: configurations table lacks {missing}; not a release this page can show")
    table = configs.reindex(columns=list(ROW_COLUMNS))
    runs_path = release_dir / "data" / "runs.parquet"
    if runs_path.is_file():
        facts = run_provenance(pd.read_parquet(runs_path))
        table = table.join(facts, on="configuration_id")
    else:
        table = table.reindex(columns=[*ROW_COLUMNS, *RUN_COLUMNS])
    table = table.sort_values(["energy_per_token_j", "configuration_id"], kind="stable")
    return version, [{k: json_scalar(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def run_provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration_id: shortest, median and longest measured window (s), the median time between the
    starts of consecutive repetitions (s; None with one repetition; `started_at` is kept to the second, so this
    is ±1 s) and the energy flags seen (comma list)."""
    if runs.empty or "configuration_id" not in runs:
        return pd.DataFrame(columns=list(RUN_COLUMNS), index=pd.Index([], name="configuration_id"))
    runs = runs.copy()
    runs["_start"] = (pd.to_datetime(runs["started_at"], utc=True, errors="coerce", format="ISO8601")
                      if "started_at" in runs else pd.NaT)
    rows: dict[str, dict[str, Any]] = {}
    for cid, group in runs.groupby("configuration_id", sort=False):
        order = group.sort_values("repetition") if "repetition" in group else group
        starts = order["_start"].dropna()
        gaps_s = starts.diff().dt.total_seconds().dropna()
        durations = order["duration_s"].astype(float) if "duration_s" in order else pd.Series(dtype=float)
        flags = sorted({f for text in order.get("energy_flags", pd.Series(dtype=str)).fillna("")
                        for f in str(text).split(",") if f})
        rows[str(cid)] = {
            "window_s_min": durations.min() if len(durations) else None,
            "window_s_median": durations.median() if len(durations) else None,
            "window_s_max": durations.max() if len(durations) else None,
            "repeat_interval_s": gaps_s.median() if len(gaps_s) else None,
            "energy_flags": ",".join(flags),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(RUN_COLUMNS))
    frame.index.name = "configuration_id"
    return frame


def json_scalar(value: Any) -> Any:
    """A JSON-safe plain value: numpy scalars unwrapped, NaN/inf/NA/NaT as None (JSON has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"not a JSON scalar: {value!r} ({type(value).__name__})")


def embed_json(data: Any) -> str:
    """JSON for inside a `<script type="application/json">`: no `<`, `>` or `&` survives, so no `</script>` or
    `<!--` in the data can end the element; JSON.parse reads the escapes back as the same characters."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return "".join(_JSON_ESCAPES.get(ch, ch) for ch in text)


def validated_recommendations(recommendations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The caller's precomputed answers as plain JSON, checked: hardware, scenario and source are text, `best` is
    a flat mapping of scalars or None; anything else raises (TypeError for a non-mapping, else ValueError) before
    a page is written."""
    clean = []
    for i, rec in enumerate(recommendations):
        if not isinstance(rec, Mapping):
            raise TypeError(f"recommendation {i}: expected a mapping, got {type(rec).__name__}")
        for key in ("hardware", "scenario", "source"):
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise ValueError(f"recommendation {i}: {key!r} must be non-empty text")
        best = rec.get("best")
        if best is not None and not isinstance(best, Mapping):
            raise ValueError(f"recommendation {i}: 'best' must be a mapping or None")
        warnings = rec.get("warnings") or []
        if isinstance(warnings, str) or not all(isinstance(w, str) for w in warnings):
            raise ValueError(f"recommendation {i}: 'warnings' must be a list of text")
        try:
            best_clean = None if best is None else {str(k): json_scalar(v) for k, v in best.items()}
        except ValueError as exc:
            raise ValueError(f"recommendation {i}: 'best' {exc}") from exc
        clean.append({"hardware": rec["hardware"], "scenario": rec["scenario"], "source": rec["source"],
                      "best": best_clean, "warnings": list(warnings), "unmet": str(rec.get("unmet") or "")})
    return clean


def render_explorer(version: str, rows: list[dict[str, Any]],
                    recommendations: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The page as one HTML string: data inlined as JSON, script and style inlined and allowed by hash."""
    script = (STATIC_DIR / "explorer.js").read_text(encoding="utf-8")
    style = (STATIC_DIR / "explorer.css").read_text(encoding="utf-8")
    data = {"version": version, "rows": rows, "meta": release_facts(rows),
            "recommendations": None if recommendations is None else validated_recommendations(recommendations)}
    # constants and base64 digests only: nothing here needs escaping inside the double-quoted attribute
    csp = ("default-src 'none'; base-uri 'none'; form-action 'none'; img-src data:; "
           f"script-src '{_sha256_source(script)}'; style-src '{_sha256_source(style)}'")
    title = html.escape(f"Watt Counts explorer, release {version}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<title>{title}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        f"<noscript><p>{title}: this page needs JavaScript to show the release's rows.</p></noscript>\n"
        "<div id=\"app\"></div>\n"
        f"<script type=\"application/json\" id=\"explorer-data\">{embed_json(data)}</script>\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


def release_facts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the header and captions say about the release as a whole, computed here so the page states it
    rather than guessing: counts by weights and quality source, and whether cost is one price × energy."""
    weights = pd.Series([r["weights"] for r in rows], dtype=object).fillna("unknown").value_counts()
    sources = pd.Series([r["quality_source"] for r in rows], dtype=object).fillna("none").value_counts()
    ratio = pd.Series([r["cost_per_1m_tokens_usd"] / r["energy_per_token_j"] for r in rows
                       if r["cost_per_1m_tokens_usd"] is not None and r["energy_per_token_j"]], dtype=float)
    one_price = bool(len(ratio) > 1 and (ratio.max() - ratio.min()) <= 1e-9 * ratio.abs().max())
    return {"configurations": len(rows), "by_weights": {str(k): int(v) for k, v in weights.items()},
            "by_quality_source": {str(k): int(v) for k, v in sources.items()},
            "cost_proportional_to_energy": one_price,
            "usd_per_kwh": float(ratio.median() * 3.6) if one_price else None}


def space_readme(version: str, n_configurations: int) -> str:
    """A static Hugging Face Space's card: front matter that serves index.html as it is."""
    title = json.dumps(f"Watt Counts explorer {version}"[:60])  # JSON text is a valid YAML scalar
    return (f"---\ntitle: {title}\nemoji: ⚡\ncolorFrom: yellow\ncolorTo: blue\nsdk: static\n"
            f"app_file: {INDEX}\npinned: false\n---\n\n"
            f"The Watt Counts dataset release {version} ({n_configurations} configurations) as one static page: "
            "leaderboard, quality-vs-energy and cost fronts, provenance and a recommend form. Built by "
            "`wattcounts_pipeline.hub.explorer.build_explorer`; it makes no network request.\n")


def _sha256_source(text: str) -> str:
    """A CSP hash source for an inline element's exact text."""
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
