"""Publish a built release: to a local git dataset repository (default) or to the Hugging Face Hub.

Both targets give one commit and one tag per release, are idempotent, and refuse to move an existing tag.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from wattcounts_pipeline.core.errors import ReleaseError
from wattcounts_pipeline.core.hub_call import redacted_call
from wattcounts_pipeline.hub.release import verify_checksums, version_key

logger = logging.getLogger(__name__)

BRANCH = "main"
AUTHOR_NAME = "Watt Counts release bot"
AUTHOR_EMAIL = "releases@wattcounts.invalid"
GIT_TIMEOUT_S = 120
HUB_TIMEOUT_S = 300.0  # one Hub call, its retries included: an endpoint that never answers fails the publish
HUB_KEEP = frozenset({".gitattributes"})  # files the Hub creates itself; never deleted, never compared
T = TypeVar("T")


@dataclass(frozen=True)
class PublishResult:
    tag: str
    commit: str
    changed: bool  # False when the tag already held exactly this release


# ---------------------------------------------------------------- local git repository


def publish_local(release_dir: Path, repo_dir: Path, tag: str) -> PublishResult:
    """Commit `release_dir` as the whole tree of `repo_dir`'s main branch and tag it, atomically.

    `repo_dir` is a bare repository (created on first use; the layout olah serves). Blobs and the commit are
    written first, unreachable; then one `git update-ref` transaction moves `main` and creates the tag together,
    so an interrupted publish leaves the previous release as the visible head and no half-published tag.
    """
    release_dir, repo_dir = Path(release_dir).resolve(), Path(repo_dir).resolve()
    version_key(tag)
    verify_checksums(release_dir)
    git = _Git(_ensure_bare_repo(repo_dir))
    head = git.resolve(f"refs/heads/{BRANCH}")
    tagged = git.resolve(f"refs/tags/{tag}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="wattcounts-publish-") as tmp:
        stage = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(release_dir)}
        git("add", "--all", "--force", "--", ".", env=stage)
        tree = git("write-tree", env=stage)
    if tagged is not None:
        if git("rev-parse", f"{tagged}^{{tree}}") == tree:
            logger.info("%s: tag %s already holds this release; nothing to do", repo_dir, tag)
            return PublishResult(tag, tagged, changed=False)
        raise ReleaseError(f"{repo_dir}: tag {tag} already exists with different content; "
                           "publish a new version instead of moving a tag")
    if head is not None and git("rev-parse", f"{head}^{{tree}}") == tree:
        commit = head  # same content already on main (e.g. a tag lost to an earlier crash): tag it, no empty commit
    else:
        parents = ["-p", head] if head else []
        commit = git("commit-tree", tree, *parents, "-m", f"Release {tag}")
    tag_object = git("mktag", stdin=(f"object {commit}\ntype commit\ntag {tag}\n"
                                     f"tagger {AUTHOR_NAME} <{AUTHOR_EMAIL}> {int(time.time())} +0000\n\n"
                                     f"Watt Counts release {tag}\n"))
    old = head or "0" * 40
    try:
        git("update-ref", "--stdin", stdin=(f"start\nupdate refs/heads/{BRANCH} {commit} {old}\n"
                                            f"create refs/tags/{tag} {tag_object}\nprepare\ncommit\n"))
    except ReleaseError as exc:
        raise ReleaseError(f"{repo_dir}: could not move {BRANCH} and create tag {tag} (did another publish "
                           f"run at the same time?): {exc}") from exc
    logger.info("%s: published %s as %s", repo_dir, tag, commit[:12])
    return PublishResult(tag, commit, changed=True)


class _Git:
    """The git CLI on one bare repository, isolated from user and system config, with a fixed identity."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    def __call__(self, command: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
        argv = ["git", "--git-dir", str(self.git_dir), "-c", "core.autocrlf=false", command, *args]
        full_env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_AUTHOR_NAME": AUTHOR_NAME, "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
                    "GIT_COMMITTER_NAME": AUTHOR_NAME, "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL, **(env or {})}
        try:
            done = subprocess.run(argv, env=full_env, input=stdin, capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReleaseError(f"git {command} failed: {exc}") from exc
        if done.returncode != 0:
            raise ReleaseError(f"git {command} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def resolve(self, rev: str) -> str | None:
        """The object id `rev` names, or None if it does not exist."""
        try:
            return self("rev-parse", "--verify", "--quiet", rev)
        except ReleaseError:
            return None


def _ensure_bare_repo(repo_dir: Path) -> Path:
    """Create the bare repository on first use, in a temporary sibling renamed into place (never half-made)."""
    if (repo_dir / "HEAD").is_file():
        return repo_dir
    if repo_dir.exists() and any(repo_dir.iterdir()):
        raise ReleaseError(f"{repo_dir} exists and is not a bare git repository")
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo_dir.name}.", dir=repo_dir.parent))
    try:
        _Git(tmp)("init", "--bare", f"--initial-branch={BRANCH}")
        if repo_dir.exists():
            repo_dir.rmdir()
        tmp.rename(repo_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("created dataset repository %s", repo_dir)
    return repo_dir


# ---------------------------------------------------------------- Hugging Face Hub


def publish_hub(release_dir: Path, repo_id: str, tag: str, token: str | None = None,
                endpoint: str | None = None, timeout_s: float = HUB_TIMEOUT_S) -> PublishResult:
    """Publish `release_dir` to the Hub dataset `repo_id` as one commit on main, tagged `tag`.

    The token comes from `token` or `$HF_TOKEN` and never reaches logs, files or error messages: every Hub
    error is re-raised as a ReleaseError with the token redacted and the original exception dropped. Every
    Hub call fails with a ReleaseError after `timeout_s` without an answer (huggingface_hub waits forever).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    release_dir = Path(release_dir).resolve()
    version_key(tag)
    verify_checksums(release_dir)
    token = token or os.environ.get("HF_TOKEN") or None
    if token is None:
        raise ReleaseError("publishing to the Hub needs a token: pass token= or set HF_TOKEN")
    api = HfApi(endpoint=endpoint, token=token)

    def hub(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return _redacted(token, f"{what} ({repo_id})", timeout_s, fn, *args, **kwargs)

    hub("creating the dataset repository", api.create_repo, repo_id, repo_type="dataset", exist_ok=True)
    refs = hub("listing refs", api.list_repo_refs, repo_id, repo_type="dataset")
    local = _local_files(release_dir)
    tagged = next((r.target_commit for r in refs.tags if r.name == tag), None)
    if tagged is not None:
        if _same_files(_remote_files(hub, api, repo_id, tagged), local):
            logger.info("%s: tag %s already holds this release; nothing to do", repo_id, tag)
            return PublishResult(tag, tagged, changed=False)
        raise ReleaseError(f"{repo_id}: tag {tag} already exists with different content; "
                           "publish a new version instead of moving a tag")
    head = next((r.target_commit for r in refs.branches if r.name == BRANCH), None)
    remote = _remote_files(hub, api, repo_id, head) if head else {}
    if head is not None and _same_files(remote, local):
        commit = head  # same content already on main (e.g. a tag lost to an earlier failure): no empty commit
    else:
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(release_dir / path)) for path in sorted(local)]
        operations += [CommitOperationDelete(path_in_repo=path) for path in sorted(set(remote) - set(local))]
        # create_commit, not upload_folder: with hf_xet installed upload_folder may split a folder into several
        # commits; a release is exactly one. parent_commit makes a concurrent push fail instead of interleave.
        info = hub("committing the release", api.create_commit, repo_id, operations, repo_type="dataset",
                   commit_message=f"Release {tag}", parent_commit=head)
        commit = info.oid
    hub("creating the tag", api.create_tag, repo_id, tag=tag, revision=commit, repo_type="dataset",
        tag_message=f"Watt Counts release {tag}")
    logger.info("%s: published %s as %s", repo_id, tag, commit[:12])
    return PublishResult(tag, commit, changed=True)


def _local_files(release_dir: Path) -> dict[str, tuple[str, str]]:
    """path → (git blob sha1, sha256): what the Hub reports for regular and for LFS files respectively."""
    files = {}
    for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()  # git object id
        files[path.relative_to(release_dir).as_posix()] = (blob, hashlib.sha256(data).hexdigest())
    return files


def _remote_files(hub: Callable[..., Any], api: Any, repo_id: str, revision: str) -> dict[str, tuple[str, str | None]]:
    """path → (git blob id, LFS sha256 or None) of every file at a Hub revision."""
    from huggingface_hub.hf_api import RepoFile

    entries = hub("listing files", lambda: list(api.list_repo_tree(repo_id, revision=revision, recursive=True,
                                                                       repo_type="dataset")))
    files = {}
    for entry in entries:
        if isinstance(entry, RepoFile) and entry.path not in HUB_KEEP:
            files[entry.path] = (entry.blob_id, entry.lfs.sha256 if entry.lfs else None)
    return files


def _same_files(remote: dict[str, tuple[str, str | None]], local: dict[str, tuple[str, str]]) -> bool:
    """Same paths, and each file equal by LFS sha256 where the Hub stores it in LFS, else by git blob id."""
    return remote.keys() == local.keys() and all(
        (lfs == local[path][1]) if lfs else (blob == local[path][0]) for path, (blob, lfs) in remote.items())


def _redacted(token: str, what: str, timeout_s: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One Hub call within `timeout_s` (its retries included), its failure a ReleaseError without the token."""
    return redacted_call(token, what, timeout_s, ReleaseError, fn, *args, **kwargs)
