"""A small Hugging Face Hub stand-in for tests: the write side of the Hub API, stored in real git repositories.

It speaks the subset `huggingface_hub.HfApi` uses for `create_repo`, `create_commit` (validate-yaml, preupload,
commit with regular base64 files and deletions; with `create_pr=True` the commit opens a pull request on
`refs/pr/<n>`), `create_tag`, `list_repo_refs` (pull requests included), `list_repo_tree`, `merge_pull_request`
(a real git merge into main, refused on conflict), `get_discussion_details` and `hf_hub_download` (resolve,
HEAD and GET). Repositories
are bare git repositories at `<root>/datasets/<org>/<name>`, the layout olah serves, so what is published here
can be read back through olah with `datasets.load_dataset`. Standard library only; binds 127.0.0.1.

Like a careless proxy, its 401 answers echo the Authorization header received: the client must redact it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

logger = logging.getLogger(__name__)

IDENTITY = {"GIT_AUTHOR_NAME": "hub", "GIT_AUTHOR_EMAIL": "hub@localhost", "GIT_COMMITTER_NAME": "hub",
            "GIT_COMMITTER_EMAIL": "hub@localhost", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
REPO_API = re.compile(r"^/api/datasets/(?P<org>[\w.-]+)/(?P<name>[\w.-]+)/(?P<action>refs|preupload|commit|tag|tree"
                      r"|discussions)(?:/(?P<rest>.*))?$")
RESOLVE = re.compile(r"^/datasets/(?P<org>[\w.-]+)/(?P<name>[\w.-]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
DISCUSSIONS = "hub-discussions.json"  # pull requests of a repository, kept beside its git data


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class HubServer:
    """Start with `start()`, stop with `stop()`; `url` is the endpoint to give HfApi."""

    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = root, token
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.timeout = 10
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hubserver", daemon=True)

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / "datasets" / repo_id

    # ------------------------------------------------------------ git

    def git(self, repo: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, timeout=60,
                              env={**os.environ, **IDENTITY, **(env or {})}, check=False)
        if done.returncode != 0:
            raise HubError(400, f"git {args[0]}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode().strip()

    def commit_of(self, repo: Path, revision: str) -> str:
        try:
            return self.git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
        except HubError:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound") from None

    def repo(self, org: str, name: str) -> Path:
        path = self.repo_dir(f"{org}/{name}")
        if not (path / "HEAD").is_file():
            raise HubError(404, f"Repository not found: {org}/{name}", "RepoNotFound")
        return path

    # ------------------------------------------------------------ endpoints

    def create_repo(self, body: dict[str, Any]) -> tuple[int, dict]:
        org, name = body.get("organization"), body["name"]
        if body.get("type") != "dataset" or not org:
            raise HubError(400, "this test Hub only hosts <org>/<name> datasets")
        url = f"{self.url}/datasets/{org}/{name}"
        path = self.repo_dir(f"{org}/{name}")
        if path.exists():
            return 409, {"error": "You already created this dataset repo", "url": url}
        path.mkdir(parents=True)
        self.git(path, "init", "--bare", "--initial-branch=main")
        self.commit(path, "main", {"summary": "initial commit"},
                    [{"key": "file", "value": {"path": ".gitattributes", "encoding": "base64",
                                               "content": base64.b64encode(b"*.parquet binary\n").decode()}}])
        return 200, {"url": url}

    def validate_yaml(self, body: dict[str, Any]) -> tuple[int, dict]:
        match = re.match(r"^---\n(.*?)\n---\n", body.get("content", ""), flags=re.DOTALL)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}
        errors = [{"message": f"configs[{i}] needs config_name and data_files"}
                  for i, c in enumerate(meta.get("configs", [])) if not {"config_name", "data_files"} <= set(c)]
        return (400, {"errors": errors}) if errors else (200, {"warnings": []})

    def refs(self, repo: Path, pull_requests: bool = False) -> dict:
        out: dict[str, list] = {"branches": [], "tags": [], "converts": [], **({"pullRequests": []} if pull_requests
                                                                                else {})}
        listing = self.git(repo, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)")
        for line in filter(None, listing.splitlines()):
            ref, obj, peeled = [*line.split(" "), ""][:3]
            group, _, name = ref.removeprefix("refs/").partition("/")
            key = {"heads": "branches", "tags": "tags", **({"pr": "pullRequests"} if pull_requests else {})}.get(group)
            if key:
                out[key].append({"name": name, "ref": ref, "targetCommit": peeled or obj})
        return out

    def preupload(self, repo: Path, revision: str, body: dict[str, Any]) -> dict:
        commit = self.commit_of(repo, revision)
        existing = self.blobs(repo, commit, recursive=True)
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                           "oid": existing.get(f["path"], {}).get("oid")} for f in body["files"]]}

    def tree(self, repo: Path, revision: str, path: str, recursive: bool) -> list[dict]:
        commit = self.commit_of(repo, revision)
        entries = self.blobs(repo, commit, recursive=recursive, under=path)
        if path and not entries:
            raise HubError(404, f"{path} not found at {revision}", "EntryNotFound")
        return list(entries.values())

    def blobs(self, repo: Path, commit: str, recursive: bool, under: str = "") -> dict[str, dict]:
        args = ["ls-tree", "-l", *(["-r", "-t"] if recursive else []), commit]
        if under:
            args += ["--", under.rstrip("/") + "/"]
        out = {}
        for line in filter(None, self.git(repo, *args).splitlines()):
            meta, path = line.split("\t", 1)
            _, kind, oid, size = meta.split()
            out[path] = {"type": "directory" if kind == "tree" else "file", "oid": oid,
                         "size": 0 if size == "-" else int(size), "path": path}
        return out

    def commit(self, repo: Path, revision: str, header: dict[str, Any], operations: list[dict],
               ref: str | None = None) -> str:
        """Apply one NDJSON commit payload to branch `revision` (or to `ref`, e.g. a pull request's) atomically
        (compare-and-swap on the ref)."""
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": tmp}  # empty tree: index-only edits
            ref = ref or (revision if revision.startswith("refs/") else f"refs/heads/{revision}")
            head = self.git(repo, "rev-parse", "--verify", "--quiet", ref) if self.has_ref(repo, ref) else ""
            if header.get("parentCommit") and header["parentCommit"] != head:
                raise HubError(412, f"parent commit {header['parentCommit']} is not the head of {revision}")
            self.git(repo, "read-tree", *([head] if head else ["--empty"]), env=env)
            for op in operations:
                value = op["value"]
                if op["key"] == "file":
                    content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                        else value["content"].encode()
                    oid = self.git(repo, "hash-object", "-w", "--stdin", stdin=content)
                    self.git(repo, "update-index", "--add", "--cacheinfo", f"100644,{oid},{value['path']}", env=env)
                elif op["key"] in ("deletedFile", "deletedFolder"):
                    prefix = value["path"].rstrip("/") + ("/" if op["key"] == "deletedFolder" else "")
                    paths = self.git(repo, "ls-files", "--", prefix, env=env).splitlines()
                    if not paths:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                    self.git(repo, "update-index", "--force-remove", "--", *paths, env=env)
                else:
                    raise HubError(400, f"unsupported commit operation {op['key']!r} (this Hub takes regular files)")
            tree = self.git(repo, "write-tree", env=env)
            message = header.get("summary", "") + ("\n\n" + header["description"] if header.get("description") else "")
            commit = self.git(repo, "commit-tree", tree, *(["-p", head] if head else []), "-m", message)
            self.git(repo, "update-ref", ref, commit, head or "0" * 40)
            return commit

    # ------------------------------------------------------------ pull requests

    def discussions(self, repo: Path) -> list[dict[str, Any]]:
        path = repo / DISCUSSIONS
        return json.loads(path.read_text()) if path.is_file() else []

    def save_discussions(self, repo: Path, items: list[dict[str, Any]]) -> None:
        (repo / DISCUSSIONS).write_text(json.dumps(items))

    def open_pr(self, repo: Path, revision: str, header: dict[str, Any], operations: list[dict]) -> int:
        """A commit with create_pr: a new refs/pr/<n> from `revision`'s head, the commit on it, the PR recorded."""
        base = self.commit_of(repo, revision)
        with self.lock:
            items = self.discussions(repo)
            num = len(items) + 1
            self.git(repo, "update-ref", f"refs/pr/{num}", base, "0" * 40)
            items.append({"num": num, "title": header.get("summary", ""), "description": header.get("description", ""),
                          "status": "open", "isPullRequest": True, "target": revision})
            self.save_discussions(repo, items)
        self.commit(repo, revision, {k: v for k, v in header.items() if k != "parentCommit"}, operations,
                    ref=f"refs/pr/{num}")
        return num

    def discussion(self, repo: Path, num: int) -> dict[str, Any]:
        items = self.discussions(repo)
        if not 1 <= num <= len(items):
            raise HubError(404, f"Discussion {num} not found", "DiscussionNotFound")
        return items[num - 1]

    def merge(self, repo: Path, num: int) -> None:
        """Merge refs/pr/<num> into its target branch with a real three-way merge; a conflict is refused (409)."""
        with self.lock:
            items = self.discussions(repo)
            item = self.discussion(repo, num)
            if item["status"] != "open":
                raise HubError(400, f"Pull request {num} is {item['status']}, not open")
            target = f"refs/heads/{item['target']}"
            head, pr = self.git(repo, "rev-parse", target), self.git(repo, "rev-parse", f"refs/pr/{num}")
            done = subprocess.run(["git", "--git-dir", str(repo), "merge-tree", "--write-tree", head, pr],
                                  capture_output=True, timeout=60, env={**os.environ, **IDENTITY}, check=False)
            if done.returncode != 0:
                raise HubError(409, f"Pull request {num} does not merge cleanly: {done.stdout.decode().strip()}")
            tree = done.stdout.decode().split()[0]
            commit = self.git(repo, "commit-tree", tree, "-p", head, "-p", pr, "-m",
                              f"Merge pull request #{num}: {item['title']}")
            self.git(repo, "update-ref", target, commit, head)
            item["status"], item["merge_commit"] = "merged", commit
            items[num - 1] = item
            self.save_discussions(repo, items)

    def resolve(self, org: str, name: str, revision: str, path: str) -> tuple[bytes, dict[str, str]]:
        """A file's bytes at a revision, with the headers hf_hub_download reads (commit, etag, size)."""
        repo = self.repo(org, name)
        commit = self.commit_of(repo, revision)
        entry = self.blobs(repo, commit, recursive=True).get(path)
        if entry is None or entry["type"] != "file":
            raise HubError(404, f"{path} not found at {revision}", "EntryNotFound")
        data = subprocess.run(["git", "--git-dir", str(repo), "cat-file", "blob", entry["oid"]], capture_output=True,
                              timeout=60, env={**os.environ, **IDENTITY}, check=True).stdout
        return data, {"X-Repo-Commit": commit, "ETag": f'"{entry["oid"]}"', "Content-Type": "application/octet-stream"}

    def has_ref(self, repo: Path, ref: str) -> bool:
        return subprocess.run(["git", "--git-dir", str(repo), "show-ref", "--verify", "--quiet", ref],
                              env={**os.environ, **IDENTITY}, timeout=30, check=False).returncode == 0

    def tag(self, repo: Path, revision: str, body: dict[str, Any]) -> dict:
        commit = self.commit_of(repo, revision)
        with self.lock:
            if self.has_ref(repo, f"refs/tags/{body['tag']}"):
                raise HubError(409, f"Tag {body['tag']} already exists")
            self.git(repo, "tag", "-a", body["tag"], commit, "-m", body.get("message") or body["tag"])
        return {}


def _discussion_details(item: dict[str, Any], url: str, org: str, name: str, repo: Path, hub: HubServer) -> dict:
    """A pull request as get_discussion_details reads it (its events left empty)."""
    ref = f"refs/pr/{item['num']}"
    return {"num": item["num"], "title": item["title"], "status": item["status"], "isPullRequest": True,
            "createdAt": "2026-01-01T00:00:00.000Z", "author": {"name": "contributor", "type": "user"},
            "repo": {"name": f"{org}/{name}", "type": "dataset"}, "pinned": False, "events": [],
            "filesWithConflicts": [], "changes": {"base": f"refs/heads/{item['target']}",
                                                  **({"mergeCommitId": item["merge_commit"]}
                                                     if item.get("merge_commit") else {})},
            "diff": "", "endpoint": url, "headSha": hub.commit_of(repo, ref) if hub.has_ref(repo, ref) else None}


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("hubserver: " + format, *args)

        def do_GET(self) -> None:
            self.dispatch("GET")

        def do_POST(self) -> None:
            self.dispatch("POST")

        def do_HEAD(self) -> None:
            self.dispatch("HEAD")

        def dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    raise HubError(401, f"Invalid credentials in Authorization header "
                                        f"{self.headers.get('Authorization')!r}")
                resolve = RESOLVE.match(url.path)
                if resolve and method in ("GET", "HEAD"):
                    data, headers = hub.resolve(resolve["org"], resolve["name"], unquote(resolve["revision"]),
                                                unquote(resolve["path"]))
                    self.send_response(200)
                    for key, value in {**headers, "Content-Length": str(len(data))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if method == "GET":
                        self.wfile.write(data)
                    return
                status, payload = self.route(method, url.path, query, raw)
            except HubError as exc:
                status, payload = exc.status, {"error": str(exc)}
                self.reply(status, payload, {"X-Error-Code": exc.code} if exc.code else {})
                return
            self.reply(status, payload)

        def route(self, method: str, path: str, query: dict, raw: bytes) -> tuple[int, Any]:
            if method == "POST" and path == "/api/repos/create":
                return hub.create_repo(json.loads(raw))
            if method == "POST" and path == "/api/validate-yaml":
                return hub.validate_yaml(json.loads(raw))
            match = REPO_API.match(path)
            if not match:
                raise HubError(404, f"no route {method} {path}")
            repo = hub.repo(match["org"], match["name"])
            action, raw_rest = match["action"], match["rest"] or ""
            rest = unquote(raw_rest)  # a revision such as refs%2Fpr%2F1 arrives quoted: split before unquoting
            if method == "GET" and action == "refs":
                return 200, hub.refs(repo, pull_requests=query.get("include_prs", ["0"])[0] in ("1", "true", "True"))
            if method == "GET" and action == "tree":
                revision, _, sub = raw_rest.partition("/")
                return 200, hub.tree(repo, unquote(revision), unquote(sub),
                                     query.get("recursive", ["False"])[0].lower() == "true")
            if action == "discussions":
                num_text, _, verb = rest.partition("/")
                if not num_text.isdigit():
                    raise HubError(404, f"no route {method} {path}")
                if method == "POST" and verb == "merge":
                    hub.merge(repo, int(num_text))
                    return 200, {}
                if method == "GET" and not verb:
                    item = hub.discussion(repo, int(num_text))
                    return 200, _discussion_details(item, hub.url, match["org"], match["name"], repo, hub)
            if method == "POST" and action == "preupload":
                return 200, hub.preupload(repo, rest, json.loads(raw))
            if method == "POST" and action == "tag":
                return 200, hub.tag(repo, rest, json.loads(raw))
            if method == "POST" and action == "commit":
                lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
                header = next(item["value"] for item in lines if item["key"] == "header")
                operations = [item for item in lines if item["key"] != "header"]
                base_url = f"{hub.url}/datasets/{match['org']}/{match['name']}"
                if query.get("create_pr", ["0"])[0] in ("1", "true", "True"):
                    num = hub.open_pr(repo, rest, header, operations)
                    commit = hub.commit_of(repo, f"refs/pr/{num}")
                    return 200, {"commitUrl": f"{base_url}/commit/{commit}", "commitOid": commit,
                                 "pullRequestUrl": f"{base_url}/discussions/{num}"}
                commit = hub.commit(repo, rest, header, operations)
                return 200, {"commitUrl": f"{base_url}/commit/{commit}", "commitOid": commit, "pullRequestUrl": None}
            raise HubError(404, f"no route {method} {path}")

        def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
