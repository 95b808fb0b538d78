"""benchmarks/ui_materialize_all.py's named-release helpers: the seeded previous release is never taken for the new
one, and the new release comes back with the dataset repo's log."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmarks import ui_materialize_all


def test_newest_skips_the_seeded_release(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    (releases / "v0.1.0").mkdir(parents=True)
    assert ui_materialize_all.newest(releases, skip="v0.1.0") is None
    assert ui_materialize_all.newest(releases) == "v0.1.0"
    (releases / "v0.2.0").mkdir()
    assert ui_materialize_all.newest(releases, skip="v0.1.0") == "v0.2.0"
    assert ui_materialize_all.newest(tmp_path / "missing") is None


def test_keep_release_copies_the_folder_and_the_repo_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "releases" / "v0.2.0" / "data").mkdir(parents=True)
    (home / "releases" / "v0.2.0" / "CHANGELOG.md").write_text("## v0.2.0 (since v0.1.0)\n")
    repo = home / "dataset_repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("card\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "Release v0.2.0"], check=True)
    subprocess.run([*git, "tag", "v0.2.0"], check=True)
    out = tmp_path / "kept"
    ui_materialize_all.keep_release(home, "v0.2.0", out)
    assert (out / "v0.2.0" / "CHANGELOG.md").read_text() == "## v0.2.0 (since v0.1.0)\n"
    log = (out / "dataset_repo.log").read_text()
    assert "tag: v0.2.0" in log and "Release v0.2.0" in log
