"""Crash-safe folders: write into a staging sibling, rename into place, remove what a killed run left.

The one copy of this pattern (the dataset release, the asset IO manager and the submission store use it), and
`atomic_file`, its one-file form (caches of GGUFs and task files, packed sweep tables).
A rename within one parent folder is atomic, so readers see the old folder or the new one, never half of
either; staging folders start with `STAGING` and are removed by whoever next holds the lock of that output.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING = ".incoming-"
_FOLDER_MODE = 0o755  # mkdtemp's 0700 would stick to the published folder


def staging_folder(parent: Path, name: str) -> Path:
    """A new empty folder `parent/.incoming-<name>-<random>`: same parent as the target, so the rename is atomic."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING}{name}-", dir=parent))
    folder.chmod(_FOLDER_MODE)
    return folder


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A path beside `target` to write; it becomes `target` by one rename only when the block ends without an
    error, and is removed otherwise, so a reader never meets a half-written file. The path does not exist yet:
    the writer creates it (with the process's usual mode)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def replace_folder(staged: Path, folder: Path) -> None:
    """Put the complete folder `staged` at `folder`, replacing an existing one by renames only.

    A crash between the two renames leaves `folder` absent and the old copy under a staging name (removed
    later); it never leaves a mixture of old and new files.
    """
    if folder.exists():
        old = folder.with_name(f"{STAGING}{folder.name}-{uuid.uuid4().hex}")
        os.replace(folder, old)
        os.replace(staged, folder)
        remove_tree(old)
    else:
        os.replace(staged, folder)
    fsync_dir(folder.parent)


def remove_tree(path: Path) -> None:
    """Remove a folder even where it or its contents were made read-only (accepted bundles, their staging)."""
    if path.is_dir() and not path.is_symlink():
        for folder, _dirs, _files in os.walk(path):  # unlinking needs a writable parent; file modes do not matter
            os.chmod(folder, stat.S_IRWXU)
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def stale_staging(parent: Path) -> list[Path]:
    """Staging folders under `parent`; the caller removes those whose output lock it can take."""
    return sorted(parent.glob(f"{STAGING}*")) if parent.is_dir() else []


@contextmanager
def locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created if missing); yields False if `wait` is off and it is taken.

    flock belongs to the open file, so two threads of one process exclude each other as two processes do, and
    the kernel releases it when its holder dies: a killed run never leaves a lock behind. The lock file stays
    (removing it would let a waiter and a newcomer lock two different files).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut must not undo an accepted bundle)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
