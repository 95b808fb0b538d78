"""Publishing against real local servers: olah serves our git repositories as a Hub for reads, and
tests/helpers/hubserver.py takes Hub API writes. `datasets.load_dataset(..., revision=tag)` runs in a subprocess because
HF_ENDPOINT must be set before huggingface_hub is imported."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import string
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import hubdata
from tests.helpers.hubserver import HubServer
from wattcounts_pipeline import paths
from wattcounts_pipeline.core.errors import ReleaseError
from wattcounts_pipeline.hub import build_release, publish_hub, publish_local

STARTUP_TIMEOUT_S = 30
LOAD_TIMEOUT_S = 120


def _fake_token() -> str:
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v0.1.0 (batch 1/4/16, with quality) and v0.2.0 (batch 1/4/32, no quality table, 10% more energy)."""
    out = tmp_path_factory.mktemp("releases")
    v1 = build_release(hubdata.release_tables(), "v0.1.0", out)
    v2_tables = hubdata.release_tables(scale=1.1, batch_sizes=(1, 4, 32))
    del v2_tables["quality"]
    return {"v0.1.0": v1, "v0.2.0": build_release(v2_tables, "v0.2.0", out, previous=v1)}


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the dataset repositories: `<root>/datasets/<org>/<name>`, served by olah, written by the tests."""
    return tmp_path_factory.mktemp("mirrors")


@pytest.fixture(scope="module")
def olah(mirrors: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """olah in offline mode serving the git repositories under `mirrors`; yields its endpoint URL."""
    work = tmp_path_factory.mktemp("olah")
    port = _free_port()
    (work / "olah.toml").write_text(textwrap.dedent(f"""\
        [basic]
        host = "127.0.0.1"
        port = {port}
        repos-path = "{work / 'cache'}"
        mirrors-path = ["{mirrors}"]
        hf-scheme = "http"
        hf-netloc = "127.0.0.1:9"
        hf-lfs-netloc = "127.0.0.1:9"

        [accessibility]
        offline = true
        """))
    log = (work / "olah.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "olah.server", "--config", str(work / "olah.toml")],
                            cwd=work, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"olah did not start: {(work / 'olah.out').read_text()[-2000:]}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def hub_token() -> str:
    return _fake_token()


@pytest.fixture(scope="module")
def hub(mirrors: Path, hub_token: str) -> Iterator[HubServer]:
    server = HubServer(mirrors, hub_token).start()
    yield server
    server.stop()


def load_via_hub(endpoint: str, repo_id: str, requests: list[tuple[str, str]], tmp: Path) -> list[dict]:
    """`load_dataset(repo_id, config, revision=rev)` for each request in a fresh process pointed at `endpoint`.

    Each result is {"rows", "batch_sizes", "energy_per_token_j_sum"} or {"error": exception type}, plus the card's
    config names read through the Hub API (README via HEAD + GET, where a bad content-length shows as no configs).
    """
    script = textwrap.dedent("""\
        import json, sys
        import datasets
        from huggingface_hub import DatasetCard, hf_hub_download
        repo_id, requests = sys.argv[1], json.loads(sys.argv[2])
        out = []
        for config, revision in requests:
            try:
                ds = datasets.load_dataset(repo_id, config, revision=revision, split="train")
                card = DatasetCard.load(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision))
                out.append({"rows": ds.num_rows,
                            "batch_sizes": sorted(set(ds["batch_size"])) if "batch_size" in ds.column_names else [],
                            "energy_per_token_j_sum": round(sum(ds["energy_per_token_j"]), 9)
                            if "energy_per_token_j" in ds.column_names else None,
                            "card_configs": [c["config_name"] for c in card.data.configs]})
            except Exception as exc:
                out.append({"error": f"{type(exc).__name__}: {exc}"[:1000]})
        print("RESULT " + json.dumps(out))
        """)
    home = tmp / f"hf-home-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(paths.REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", script, repo_id, json.dumps(requests)], env=env,
                          capture_output=True, text=True, timeout=LOAD_TIMEOUT_S, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, f"loader failed ({done.returncode}): {done.stderr[-3000:]}"
    return json.loads(line.removeprefix("RESULT "))


def _same(result: dict, version: str) -> bool:
    """The loaded configurations table is exactly the one built for `version`."""
    expected = _expected(version)
    assert "error" not in result, result["error"]
    return {k: result[k] for k in expected} == expected


def _expected(version: str) -> dict:
    tables = hubdata.release_tables(scale=1.1, batch_sizes=(1, 4, 32)) if version == "v0.2.0" \
        else hubdata.release_tables()
    c = tables["configurations"]
    return {"rows": len(c), "batch_sizes": sorted(set(c["batch_size"].tolist())),
            "energy_per_token_j_sum": round(float(c["energy_per_token_j"].sum()), 9)}


# ------------------------------------------------------------------ local git repository


def test_publish_local_is_atomic_idempotent_and_tags_are_immutable(releases: dict[str, Path], mirrors: Path) -> None:
    repo = mirrors / "datasets" / "wattcounts" / "energy"
    first = publish_local(releases["v0.1.0"], repo, "v0.1.0")
    assert first.changed and first.tag == "v0.1.0"
    again = publish_local(releases["v0.1.0"], repo, "v0.1.0")
    assert again == first.__class__("v0.1.0", first.commit, changed=False)
    second = publish_local(releases["v0.2.0"], repo, "v0.2.0")
    assert second.changed and second.commit != first.commit
    with pytest.raises(ReleaseError, match="already exists with different content"):
        publish_local(releases["v0.2.0"], repo, "v0.1.0")

    assert _git(repo, "rev-list", "main").split() == [second.commit, first.commit]  # one commit per release
    assert _git(repo, "cat-file", "-t", "v0.1.0") == "tag"  # annotated
    assert _git(repo, "rev-parse", "v0.1.0^{commit}") == first.commit
    author = _git(repo, "log", "-1", "--format=%an <%ae>", "main")
    assert author == "Watt Counts release bot <releases@wattcounts.invalid>"
    assert "data/quality.parquet" not in _git(repo, "ls-tree", "-r", "--name-only", "v0.2.0").split()


def test_publish_local_refuses_a_tampered_release(releases: dict[str, Path], tmp_path: Path) -> None:
    tampered = Path(shutil.copytree(releases["v0.1.0"], tmp_path / "v0.1.0"))
    (tampered / "data" / "runs.parquet").write_bytes(b"not parquet")
    with pytest.raises(ReleaseError, match="checksum mismatch"):
        publish_local(tampered, tmp_path / "repo", "v0.1.0")
    assert not (tmp_path / "repo" / "refs" / "tags" / "v0.1.0").exists()


def test_olah_serves_each_release_by_tag(releases: dict[str, Path], mirrors: Path, olah: str,
                                         tmp_path: Path) -> None:
    repo = mirrors / "datasets" / "wattcounts" / "energy-olah"
    publish_local(releases["v0.1.0"], repo, "v0.1.0")
    publish_local(releases["v0.2.0"], repo, "v0.2.0")
    v1, v2, quality = load_via_hub(olah, "wattcounts/energy-olah", [
        ("configurations", "v0.1.0"), ("configurations", "v0.2.0"), ("quality", "v0.1.0")], tmp_path)
    assert _same(v1, "v0.1.0")
    assert _same(v2, "v0.2.0")
    assert v1["card_configs"] == ["configurations", "runs", "quality"]
    assert v2["card_configs"] == ["configurations", "runs"]
    assert quality["rows"] == 1


def test_killed_publish_leaves_previous_release_visible(releases: dict[str, Path], mirrors: Path, olah: str,
                                                        tmp_path: Path) -> None:
    """SIGKILL the publisher after blobs and commit are written, right before the ref update."""
    repo = mirrors / "datasets" / "wattcounts" / "energy-crash"
    v1 = publish_local(releases["v0.1.0"], repo, "v0.1.0")
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "git").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        for arg in "$@"; do
          if [ "$arg" = update-ref ]; then kill -9 $PPID; exit 1; fi
        done
        exec {shutil.which('git')} "$@"
        """))
    (fakebin / "git").chmod(0o755)
    code = (f"from pathlib import Path; from wattcounts_pipeline.hub import publish_local; "
            f"publish_local(Path({str(releases['v0.2.0'])!r}), Path({str(repo)!r}), 'v0.2.0')")
    env = {**os.environ, "PATH": f"{fakebin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(paths.REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr.decode()[-2000:]

    assert _git(repo, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main", "refs/tags/v0.1.0"]
    assert _git(repo, "rev-parse", "main") == v1.commit
    assert not list(repo.glob("**/*.lock"))
    dangling = _git(repo, "fsck", "--no-reflogs", "--dangling")
    assert "dangling tag" in dangling, "the kill should land after the commit and tag objects were written"
    tagged, head, missing = load_via_hub(olah, "wattcounts/energy-crash", [
        ("configurations", "v0.1.0"), ("configurations", "main"), ("configurations", "v0.2.0")], tmp_path)
    assert _same(tagged, "v0.1.0")
    assert _same(head, "v0.1.0")
    assert "error" in missing

    retry = publish_local(releases["v0.2.0"], repo, "v0.2.0")  # the next publish recovers cleanly
    assert retry.changed and _git(repo, "rev-list", "main").split() == [retry.commit, v1.commit]


# ------------------------------------------------------------------ Hub API (our test server), read back via olah


def test_publish_hub_roundtrip(releases: dict[str, Path], hub: HubServer, hub_token: str, olah: str,
                               tmp_path: Path) -> None:
    repo_id = "wattcounts/energy-hub"
    first = publish_hub(releases["v0.1.0"], repo_id, "v0.1.0", token=hub_token, endpoint=hub.url)
    assert first.changed
    again = publish_hub(releases["v0.1.0"], repo_id, "v0.1.0", token=hub_token, endpoint=hub.url)
    assert (again.commit, again.changed) == (first.commit, False)
    second = publish_hub(releases["v0.2.0"], repo_id, "v0.2.0", token=hub_token, endpoint=hub.url)
    assert second.changed and second.commit != first.commit
    with pytest.raises(ReleaseError, match="already exists with different content"):
        publish_hub(releases["v0.2.0"], repo_id, "v0.1.0", token=hub_token, endpoint=hub.url)

    repo = hub.repo_dir(repo_id)
    history = _git(repo, "rev-list", "main").split()
    assert history[:2] == [second.commit, first.commit] and len(history) == 3  # + the Hub's initial commit
    assert _git(repo, "rev-parse", "v0.2.0^{commit}") == second.commit
    files_v2 = _git(repo, "ls-tree", "-r", "--name-only", "v0.2.0").split()
    assert ".gitattributes" in files_v2 and "data/quality.parquet" not in files_v2  # stale file deleted

    v1, v2 = load_via_hub(olah, repo_id, [("configurations", "v0.1.0"), ("configurations", "v0.2.0")], tmp_path)
    assert _same(v1, "v0.1.0")
    assert _same(v2, "v0.2.0")


def test_hf_token_never_leaks(releases: dict[str, Path], hub: HubServer, hub_token: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                              capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", hub_token)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")  # its own logger defaults to WARNING
    repo_id = "wattcounts/energy-secret"
    assert publish_hub(releases["v0.1.0"], repo_id, "v0.1.0", endpoint=hub.url).changed  # token from HF_TOKEN

    errors = []
    with pytest.raises(ReleaseError) as conflict:  # an error raised while the right token is in use
        publish_hub(releases["v0.2.0"], repo_id, "v0.1.0", endpoint=hub.url)
    errors.append(conflict.value)
    wrong = _fake_token()  # the server echoes a rejected Authorization header back, like a careless proxy
    with pytest.raises(ReleaseError, match="401") as rejected:
        publish_hub(releases["v0.2.0"], repo_id, "v0.2.0", token=wrong, endpoint=hub.url)
    errors.append(rejected.value)
    assert "***" in str(rejected.value)

    captured = capfd.readouterr()
    texts = {"logs": caplog.text, "stdout": captured.out, "stderr": captured.err,
             "git history": _git(hub.repo_dir(repo_id), "log", "-p", "--all", "--format=fuller")}
    texts |= {f"exception {i}": "".join(traceback.format_exception(e)) for i, e in enumerate(errors)}
    for folder in (releases["v0.1.0"], releases["v0.2.0"], tmp_path):
        for path in folder.rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_bytes().decode("latin-1")
    for where, text in texts.items():
        for secret in (hub_token, wrong):
            assert secret not in text, f"token leaked into {where}"
    assert all(e.__cause__ is None and e.__context__ is None for e in errors)


def test_publish_hub_needs_a_token(releases: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ReleaseError, match="HF_TOKEN"):
        publish_hub(releases["v0.1.0"], "wattcounts/energy", "v0.1.0", endpoint="http://127.0.0.1:9")
