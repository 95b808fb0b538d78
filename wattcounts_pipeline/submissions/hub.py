"""Submissions through the Hugging Face Hub: a contributor opens a pull request on the dataset repository with
the packed bundle; once a maintainer merges it, the maintainers' side copies it into the inbox, where the
`submissions` sensor ingests it exactly as a bundle dropped there by hand.

On the repository a bundle is one file, `submissions/<bundle_id>.tar.gz`, its name the short sha256 of its bytes:
the maintainers' side refuses a file whose bytes do not hash to its name, and fetches each bundle once (one that
is in the inbox, accepted or rejected already is skipped). The token (`HF_TOKEN` or `token=`) never reaches a log,
an error message or a file: every Hub error is re-raised with it redacted (as `hub.publish` does for releases).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.core.hub_call import redacted_call
from wattcounts_pipeline.submissions.archive import DEFAULT_LIMITS, Limits
from wattcounts_pipeline.submissions.bundle import inspect_archive
from wattcounts_pipeline.submissions.pack import pack_bundle, rejection_message
from wattcounts_pipeline.submissions.store import BUNDLE_ID_HEX, bundle_id, bundle_state, list_inbox

logger = logging.getLogger(__name__)

REPO_FOLDER = "submissions"  # where bundles sit in the dataset repository
REPO_ENV = "WATTCOUNTS_SUBMISSIONS_REPO"  # the dataset repository the maintainers' sensor pulls merged bundles from
HUB_TIMEOUT_S = 120.0
T = TypeVar("T")


@dataclass(frozen=True)
class HubSubmission:
    """A pull request opened with one bundle."""

    bundle_id: str
    repo_id: str
    path_in_repo: str
    pr_url: str
    pr_num: int | None


def _token(token: str | None) -> str:
    token = token or os.environ.get("HF_TOKEN") or None
    if token is None:
        raise SubmissionError("submitting to the Hub needs a token: set HF_TOKEN (a token with write access to "
                              "open pull requests) or pass token=")
    return token


def _endpoint(endpoint: str | None) -> str | None:
    return endpoint or os.environ.get("HF_ENDPOINT") or None


def _hub_call(token: str, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One Hub call within HUB_TIMEOUT_S, its failure a SubmissionError that cannot hold the token."""
    return redacted_call(token, what, HUB_TIMEOUT_S, SubmissionError, fn, *args, **kwargs)


def _summary(inspection: Any) -> str:
    """The pull request's description: who, what hardware, which configurations, how many rows."""
    doc = inspection.manifest.doc
    hardware = doc["hardware"]
    machine = f"{hardware.get('gpu_count', 0)}x {hardware['gpu_name']}" if hardware.get("gpu_count") else \
        f"{hardware['cpu_model']} ({hardware['cpu_count']} CPUs)"
    lines = [(f"Watt Counts submission bundle `{inspection.bundle_id}` by {doc['contributor']['name']} "
             f"(@{doc['contributor']['handle']}), {doc['license']}."), "", f"- machine: {machine}",
             f"- rows: {inspection.rows}", "- configurations:"]
    lines += [f"  - `{key}`" for key in inspection.manifest.specs]
    lines += ["", "Checked with the ingestion checks before upload (`wattcounts submit --to-hub`); merge to ingest."]
    return "\n".join(lines)


def submit_to_hub(folder: str | Path, repo_id: str, token: str | None = None, endpoint: str | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> HubSubmission:
    """Check `folder` as ingestion will, pack it, and open a pull request on the dataset `repo_id` adding
    `submissions/<bundle_id>.tar.gz`. Raises SubmissionError listing every reason it would be rejected."""
    from huggingface_hub import CommitOperationAdd, HfApi

    token = _token(token)
    with tempfile.TemporaryDirectory(prefix="wattcounts-hub-") as tmp:
        archive = pack_bundle(folder, Path(tmp) / "bundle.tar.gz")
        bid = bundle_id(archive)
        inspection = inspect_archive(archive.read_bytes(), bid, limits)
        if not inspection.ok or inspection.manifest is None:
            raise SubmissionError(rejection_message(folder, inspection.reasons))
        api = HfApi(endpoint=_endpoint(endpoint), token=token)
        path_in_repo = f"{REPO_FOLDER}/{bid}.tar.gz"
        info = _hub_call(token, f"opening a pull request on {repo_id}", api.create_commit, repo_id,
                         [CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(archive))],
                         repo_type="dataset", create_pr=True,
                         commit_message=f"Submission {bid} by {inspection.manifest.doc['contributor']['handle']}",
                         commit_description=_summary(inspection))
    if not info.pr_url:
        raise SubmissionError(f"{repo_id}: the Hub took the commit but opened no pull request")
    logger.info("bundle %s: pull request %s", bid, info.pr_url)
    return HubSubmission(bid, repo_id, path_in_repo, str(info.pr_url), info.pr_num)


def pull_merged(repo_id: str, inbox: str | Path, store_dir: str | Path, token: str | None = None,
                endpoint: str | None = None, revision: str = "main") -> list[Path]:
    """Copy into `inbox` every bundle merged into `repo_id` (on `revision`) that this store has not seen; returns
    the new inbox files. A file whose bytes do not hash to its name is refused (logged), never placed."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    token = _token(token)
    api = HfApi(endpoint=_endpoint(endpoint), token=token)
    inbox, store = Path(inbox), Path(store_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    def listing() -> list[Any]:
        try:
            return list(api.list_repo_tree(repo_id, path_in_repo=REPO_FOLDER, revision=revision, recursive=True,
                                           repo_type="dataset"))
        except RemoteEntryNotFoundError:  # no bundle merged yet: no folder
            return []

    entries = _hub_call(token, f"listing {repo_id}", listing)
    waiting = {bundle_id(p) for p in list_inbox(inbox)}
    new = []
    for entry in entries:
        if not isinstance(entry, RepoFile):
            continue
        name = entry.path.rsplit("/", 1)[-1]
        bid = name.removesuffix(".tar.gz")
        if not name.endswith(".tar.gz") or len(bid) != BUNDLE_ID_HEX or not all(c in "0123456789abcdef" for c in bid):
            logger.warning("%s: %s is no bundle (<16 hex digits>.tar.gz); skipped", repo_id, entry.path)
            continue
        if bid in waiting or bundle_state(store, bid) != "unseen":
            continue
        new.append(_fetch(api, token, repo_id, entry.path, revision, inbox, bid))
    return [p for p in new if p is not None]


def _fetch(api: Any, token: str, repo_id: str, path: str, revision: str, inbox: Path, bid: str) -> Path | None:
    with tempfile.TemporaryDirectory(prefix="wattcounts-pull-") as tmp:
        local = Path(_hub_call(token, f"downloading {path} from {repo_id}", api.hf_hub_download, repo_id, path,
                               repo_type="dataset", revision=revision, local_dir=tmp))
        if bundle_id(local) != bid:
            logger.error("%s: %s does not hash to its name (%s); not placed in the inbox", repo_id, path,
                         bundle_id(local))
            return None
        part = inbox / f".{uuid.uuid4().hex}.tar.gz.part"  # hidden until renamed: the sensor skips it
        part.write_bytes(local.read_bytes())
        final = inbox / f"{bid}.tar.gz"
        os.replace(part, final)
    logger.info("%s: merged bundle %s placed in the inbox", repo_id, bid)
    return final
