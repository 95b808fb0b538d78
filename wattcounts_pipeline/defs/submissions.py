"""Community submissions: one partition per bundle dropped in the inbox, validated like our own rows; with
$WATTCOUNTS_SUBMISSIONS_REPO set, bundles merged into that Hub dataset repository (pull requests opened by
`wattcounts submit --to-hub`) are copied into the inbox first and ingested the same way."""

import os

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.defs.resources import SUBMISSION_PARTITIONS, submission_partitions
from wattcounts_pipeline.submissions.store import (
    IngestResult,
    accepted_result,
    bundle_id,
    bundle_state,
    bundle_tables,
    ingest_bundle,
    list_inbox,
)


def inbox() -> str:
    return str(paths.subdir("submissions", "inbox"))


@dg.asset(partitions_def=submission_partitions, group_name="submissions", kinds={"python"})
def submissions(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
    """Ingests one contributed bundle from the inbox: safety checks (size, archive bombs, paths,
    links, encodings, formula injection), the same contract validation as our measurements and
    provenance checks. Accepted bundles become immutable and join the next release with attribution;
    rejected ones move to `submissions/rejected/` with a report naming file, row and field. The value is
    the bundle's rows and its attribution row, kept in the asset store that every host of a fleet reads."""
    result = _ingest(context.partition_key)
    context.add_output_metadata({"status": result.status, "repeat": result.repeat,
                                 "rows": dg.MetadataValue.json(result.rows),
                                 "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in result.reasons) or "-")})
    if result.status != "accepted":
        raise dg.Failure(f"bundle {result.bundle_id} rejected", metadata={
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in result.reasons))})
    return bundle_tables(paths.subdir("submissions"), result.bundle_id)


def _ingest(key: str) -> IngestResult:
    """Ingest the inbox file of bundle `key`; a bundle an earlier (or racing) run accepted is a repeat, not a failure."""
    store = paths.subdir("submissions")
    for path in list_inbox(paths.subdir("submissions", "inbox")):
        try:
            if bundle_id(path) == key:
                return ingest_bundle(path, store)
        except (FileNotFoundError, SubmissionError):  # taken by a racing run while we looked
            continue
    state = bundle_state(store, key)
    if state == "accepted":
        return accepted_result(store, key)
    raise dg.Failure(f"bundle {key} is no longer in the inbox {inbox()} (state: {state})")


def pull_from_hub(context: dg.SensorEvaluationContext) -> None:
    """Copy bundles merged on the Hub into the inbox ($WATTCOUNTS_SUBMISSIONS_REPO, token HF_TOKEN, endpoint
    HF_ENDPOINT); a Hub error is logged (token redacted) and the local inbox is still served."""
    from wattcounts_pipeline.submissions.hub import REPO_ENV, pull_merged

    repo_id = os.environ.get(REPO_ENV)
    if not repo_id:
        return
    try:
        pulled = pull_merged(repo_id, paths.subdir("submissions", "inbox"), paths.subdir("submissions"))
    except SubmissionError as exc:
        context.log.warning(f"merged bundles from {repo_id} not fetched: {exc}")
        return
    if pulled:
        context.log.info(f"{len(pulled)} merged bundle(s) from {repo_id} placed in the inbox")


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def submissions_inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Adds a partition and requests an ingestion run for each new bundle in the inbox (after copying in the
    bundles merged into the Hub dataset repository $WATTCOUNTS_SUBMISSIONS_REPO, when set)."""
    pull_from_hub(context)
    known = set(context.instance.get_dynamic_partitions(SUBMISSION_PARTITIONS))
    new = sorted({bundle_id(p) for p in list_inbox(paths.subdir("submissions", "inbox"))} - known)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=k, asset_selection=[dg.AssetKey("submissions")]) for k in new],
        dynamic_partitions_requests=[submission_partitions.build_add_request(new)] if new else [],
    )
