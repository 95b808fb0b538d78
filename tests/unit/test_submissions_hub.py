"""Submissions through the Hub against the test Hub server (real HTTP, real git): pull requests, what the
maintainers' side refuses to place in the inbox, and the token kept out of every message."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from tests.helpers.hubserver import HubServer
from wattcounts_pipeline.core.errors import SubmissionError
from wattcounts_pipeline.submissions.example import write_example_bundle
from wattcounts_pipeline.submissions.hub import pull_merged, submit_to_hub
from wattcounts_pipeline.submissions.pack import pack_bundle
from wattcounts_pipeline.submissions.store import bundle_id

TOKEN = "hf_" + secrets.token_hex(16)
REPO_ID = "wattcounts/community"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path / "hub", TOKEN).start()
    HfApi(endpoint=server.url, token=TOKEN).create_repo(REPO_ID, repo_type="dataset")
    yield server
    server.stop()


def test_each_submission_is_its_own_pull_request_and_merges_one_by_one(hub: HubServer, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=TOKEN)
    first = submit_to_hub(write_example_bundle(tmp_path / "a"), REPO_ID, token=TOKEN, endpoint=hub.url)
    second = submit_to_hub(write_example_bundle(tmp_path / "b", gpu=False), REPO_ID, token=TOKEN, endpoint=hub.url)
    assert (first.pr_num, second.pr_num) == (1, 2) and first.bundle_id != second.bundle_id
    details = api.get_discussion_details(REPO_ID, 2, repo_type="dataset")
    assert details.is_pull_request and details.status == "open" and second.bundle_id in details.title
    api.merge_pull_request(REPO_ID, 2, repo_type="dataset")
    pulled = pull_merged(REPO_ID, tmp_path / "inbox", tmp_path / "store", token=TOKEN, endpoint=hub.url)
    assert [p.name for p in pulled] == [f"{second.bundle_id}.tar.gz"]  # the open one stays out
    api.merge_pull_request(REPO_ID, 1, repo_type="dataset")  # a second merge into a moved main: a real merge
    pulled = pull_merged(REPO_ID, tmp_path / "inbox", tmp_path / "store", token=TOKEN, endpoint=hub.url)
    assert [p.name for p in pulled] == [f"{first.bundle_id}.tar.gz"]
    assert bundle_id(pulled[0]) == first.bundle_id
    with pytest.raises(Exception, match="not open"):
        api.merge_pull_request(REPO_ID, 1, repo_type="dataset")


def test_a_file_that_does_not_hash_to_its_name_never_reaches_the_inbox(hub: HubServer, tmp_path: Path) -> None:
    archive = pack_bundle(write_example_bundle(tmp_path / "a"), tmp_path / "a.tar.gz")
    wrong = "0123456789abcdef"
    HfApi(endpoint=hub.url, token=TOKEN).create_commit(REPO_ID, [
        CommitOperationAdd(path_in_repo=f"submissions/{wrong}.tar.gz", path_or_fileobj=archive.read_bytes()),
        CommitOperationAdd(path_in_repo="submissions/notes.txt", path_or_fileobj=io.BytesIO(b"hello")),
    ], repo_type="dataset", commit_message="pushed, not through a pull request")
    assert pull_merged(REPO_ID, tmp_path / "inbox", tmp_path / "store", token=TOKEN, endpoint=hub.url) == []
    assert not list((tmp_path / "inbox").iterdir())


def test_a_rejected_bundle_opens_no_pull_request(hub: HubServer, tmp_path: Path) -> None:
    folder = write_example_bundle(tmp_path / "a")
    (folder / "manifest.yaml").write_text((folder / "manifest.yaml").read_text().replace("consent: true",
                                                                                          "consent: false"))
    with pytest.raises(SubmissionError, match="field consent"):
        submit_to_hub(folder, REPO_ID, token=TOKEN, endpoint=hub.url)
    refs = HfApi(endpoint=hub.url, token=TOKEN).list_repo_refs(REPO_ID, repo_type="dataset", include_pull_requests=True)
    assert refs.pull_requests == []


def test_the_token_never_reaches_the_message(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test Hub echoes the Authorization header it refuses, as a careless proxy would."""
    wrong = "hf_" + secrets.token_hex(16)
    with pytest.raises(SubmissionError) as info:
        submit_to_hub(write_example_bundle(tmp_path / "a"), REPO_ID, token=wrong, endpoint=hub.url)
    assert "401" in str(info.value) and wrong not in str(info.value) and "***" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SubmissionError, match="needs a token: set HF_TOKEN"):
        submit_to_hub(tmp_path / "a", REPO_ID, endpoint=hub.url)
