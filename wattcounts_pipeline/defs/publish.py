"""Stage 5: a versioned dataset release, committed and tagged in the local dataset repo (and the Hub)."""

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths


class ReleaseConfig(dg.Config):
    version: str = ""  # empty: the next patch version after the latest tag (0.1.0 first)


class HubResource(dg.ConfigurableResource):
    """Where releases go beyond the local repo: a Hub dataset repo, when a repo id and token are set."""

    repo_id: str = ""
    token: str | None = None
    endpoint: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.repo_id and self.token)


def stored_load_points() -> dict[str, pd.DataFrame]:
    """{"load_points": rows} of the last `load_curves` materialization when it has any, else {} (a release without
    serving sweeps has no load_points config)."""
    from wattcounts_pipeline.defs.io import UNPARTITIONED, is_stored, read_stored, store_folder

    folder = store_folder("load_curves", UNPARTITIONED)
    if not is_stored(folder):
        return {}
    frame = read_stored(folder)
    return {"load_points": frame} if isinstance(frame, pd.DataFrame) and not frame.empty else {}


@dg.asset(
    group_name="publish",
    kinds={"parquet", "git", "huggingface"},
    ins={"release_tables": dg.AssetIn(), "configurations": dg.AssetIn()},
    deps=["load_curves"],  # read when materialized (serving sweeps are optional): stored_load_points()
)
def dataset_release(context: dg.AssetExecutionContext, config: ReleaseConfig, hub: HubResource,
                    configurations: pd.DataFrame, release_tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Builds a release (parquet per table, dataset card rendered from dataset_card/ with column docs
    from schemas/, figure, checksums, changelog), commits and tags it in the local dataset repository
    and, when configured, on the Hugging Face Hub. Same content twice → no new release.
    Loadable with `datasets.load_dataset(<repo>, "configurations", revision=<tag>)`."""
    from wattcounts_pipeline.hub.publish import publish_hub, publish_local  # matplotlib, git: this step only
    from wattcounts_pipeline.hub.versioning import next_release

    tables = {**release_tables, "configurations": configurations, **stored_load_points()}
    card_facts = {"repo_id": hub.repo_id} if hub.repo_id else None
    release = next_release(tables, paths.subdir("releases"), config.version or None, context=card_facts)
    local = publish_local(release.path, paths.subdir("dataset_repo"), release.tag)
    info = {"tag": local.tag, "commit": local.commit, "path": str(release.path),
            "repo": str(paths.subdir("dataset_repo")), "new": str(release.new)}  # repo: bare git, serve with olah
    if hub.enabled:
        remote = publish_hub(release.path, hub.repo_id, release.tag, token=hub.token, endpoint=hub.endpoint or None)
        info["hub_repo"], info["hub_commit"] = hub.repo_id, remote.commit
    context.add_output_metadata({**info, "rows": dg.MetadataValue.json({k: len(v) for k, v in tables.items()}),
                                 "load_with": f"datasets.load_dataset({info['path']!r}, 'configurations')"})
    return info
