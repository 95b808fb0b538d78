"""A small Hugging Face Hub stand-in for tests: the write side of the Hub API, stored in real git repositories.

It speaks the subset `huggingface_hub.HfApi` uses for `create_repo`, `create_commit` (validate-yaml, preupload,
commit with regular base64 files and deletions), `create_tag`, `list_repo_refs` and `list_repo_tree`. Repositories
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
REPO_API = re.compile(r"^/api/datasets/(?P<org>[\w.-]+)/(?P<name>[\w.-]+)/(?P<action>refs|preupload|commit|tag|tree)"
                      r"(?:/(?P<rest>.*))?$")


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

    def refs(self, repo: Path) -> dict:
        out: dict[str, list] = {"branches": [], "tags": [], "converts": []}
        listing = self.git(repo, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)")
        for line in filter(None, listing.splitlines()):
            ref, obj, peeled = [*line.split(" "), ""][:3]
            group, _, name = ref.removeprefix("refs/").partition("/")
            key = {"heads": "branches", "tags": "tags"}.get(group)
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

    def commit(self, repo: Path, revision: str, header: dict[str, Any], operations: list[dict]) -> str:
        """Apply one NDJSON commit payload to branch `revision` atomically (compare-and-swap on the branch)."""
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": tmp}  # empty tree: index-only edits
            ref = f"refs/heads/{revision}"
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


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("hubserver: " + format, *args)

        def do_GET(self) -> None:
            self.dispatch("GET")

        def do_POST(self) -> None:
            self.dispatch("POST")

        def dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    raise HubError(401, f"Invalid credentials in Authorization header "
                                        f"{self.headers.get('Authorization')!r}")
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
            action, rest = match["action"], unquote(match["rest"] or "")
            if method == "GET" and action == "refs":
                return 200, hub.refs(repo)
            if method == "GET" and action == "tree":
                revision, _, sub = rest.partition("/")
                return 200, hub.tree(repo, revision, sub, query.get("recursive", ["False"])[0].lower() == "true")
            if method == "POST" and action == "preupload":
                return 200, hub.preupload(repo, rest, json.loads(raw))
            if method == "POST" and action == "tag":
                return 200, hub.tag(repo, rest, json.loads(raw))
            if method == "POST" and action == "commit":
                lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
                header = next(item["value"] for item in lines if item["key"] == "header")
                commit = hub.commit(repo, rest, header, [item for item in lines if item["key"] != "header"])
                return 200, {"commitUrl": f"{hub.url}/datasets/{match['org']}/{match['name']}/commit/{commit}",
                             "commitOid": commit, "pullRequestUrl": None}
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
