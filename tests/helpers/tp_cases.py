"""Transformers tensor parallelism on CPU: two ranks over gloo on the tiny random llama (run by
test_backends_tp.py in a fresh interpreter).

Rank 0 is this test process and rank 1 a worker it starts, as on a GPU host (where the group is NCCL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wattcounts_pipeline import paths
from wattcounts_pipeline.backends.base import Prompt, backend_for
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
dist = torch.distributed
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available in this torch build")

TINY = paths.REPO_ROOT / "models" / "tiny-llama"


def _spec(**engine_args: object) -> ExperimentSpec:
    model = ModelRef("tiny-llama", "config:models/tiny-llama", weights="random", architecture="llama")
    return ExperimentSpec("t", model, "transformers", "F32", "float32",
                          Workload("w", input_tokens=8, output_tokens=8, num_requests=3, batch_size=2),
                          engine_args=tuple(sorted(engine_args.items())))


def _spy_generate(backend: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[list[int]]]:
    """Record the token ids rank 0's model.generate returns (RequestResults carry no tokens)."""
    outputs: list[list[list[int]]] = []
    original = backend.model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        outputs.append(out.tolist())
        return out

    monkeypatch.setattr(backend.model, "generate", spy)
    return outputs


def _prompts(backend: Any, texts: list[str], new_tokens: int) -> list[Prompt]:
    return [Prompt(tuple(backend.bos_token_ids + backend.tokenize(t)), new_tokens) for t in texts]


def _gone(pid: int) -> bool:
    """Exited (a zombie not yet reaped by whoever inherited it counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_tp_generates_like_one_process_and_closes_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(parallelism="tensor", gpus=2)
    backend = backend_for(spec)(spec, TINY)
    assert type(backend).__name__ == "TensorParallelTransformersBackend"
    world_size_before = os.environ.get("WORLD_SIZE")
    backend.load()
    try:
        assert dist.is_initialized() and dist.get_world_size() == 2 and dist.get_backend() == "gloo"
        assert type(backend.model.model.layers[0].self_attn.q_proj.weight).__name__ == "DTensor"  # sharded
        pids = [w.proc.pid for w in backend._workers]
        tmpdir = backend._tmpdir
        assert len(pids) == 1 and tmpdir is not None and tmpdir.is_dir()
        tp_out = _spy_generate(backend, monkeypatch)
        prompts = _prompts(backend, ["the quick brown fox", "one two three four five six", "a"], 8)
        results = backend.generate(prompts, 2)
        assert [r.output_tokens for r in results] == [8, 8, 8]
        assert [r.input_tokens for r in results] == [len(p.token_ids) for p in prompts]
        assert all(0 < r.ttft_s <= r.e2e_s for r in results)
        again = backend.generate(prompts, 2)  # same prompts: the worker reuses the ones it has
        other = _prompts(backend, ["hello there"], 5)
        assert [r.output_tokens for r in backend.generate(other, 1)] == [5]
        assert len(again) == 3 and tp_out[2:4] == tp_out[:2]
        info = backend.info()["engine_args"]
        assert info["parallelism"] == "tensor" and info["gpus"] == 2 and info["tp_plan"] == "auto"
        assert info["process_group_backend"] == "gloo" and "device_map" not in info
    finally:
        backend.close()
    assert not dist.is_initialized()
    assert all(_gone(pid) for pid in pids)
    assert not tmpdir.exists()
    assert os.environ.get("WORLD_SIZE") == world_size_before

    single_spec = _spec()
    single = backend_for(single_spec)(single_spec, TINY)
    single.load()
    try:
        one_out = _spy_generate(single, monkeypatch)
        single.generate(prompts, 2)
        single.generate(other, 1)
    finally:
        single.close()
    assert one_out == tp_out[:2] + tp_out[4:]  # same seeded weights, same greedy tokens


def test_worker_death_mid_generate_raises_with_its_log() -> None:
    spec = _spec(parallelism="tensor", gpus=2, tp_timeout_s=60)
    backend = backend_for(spec)(spec, TINY)
    backend.load()
    try:
        worker = backend._workers[0]
        long = _prompts(backend, ["one two three"], 1500)  # ~10 s or more on CPU, if it were not killed
        killer = threading.Timer(1.0, worker.proc.kill)
        killer.start()
        started = time.monotonic()
        with pytest.raises(BackendError, match=r"rank 1 \(pid \d+\) exited with code -9 during generate"):
            backend.generate(long, 1)
        assert time.monotonic() - started < 30
        killer.join()
        with pytest.raises(BackendError, match="broken"):
            backend.generate(_prompts(backend, ["a"], 2), 1)
    finally:
        backend.close()
    assert not dist.is_initialized()
    assert _gone(worker.proc.pid)


def test_worker_that_cannot_start_fails_load_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    from wattcounts_pipeline.backends import transformers_tp

    monkeypatch.setattr(transformers_tp, "WORKER_MODULE", "wattcounts_pipeline.backends.no_such_worker")
    spec = _spec(parallelism="tensor", gpus=2, tp_timeout_s=60)
    backend = backend_for(spec)(spec, TINY)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"(?s)rank 1 .*exited with code 1 during 'ready'.*No module named"):
        backend.load()
    assert time.monotonic() - started < 30
    assert not dist.is_initialized() and backend._tmpdir is None


def test_worker_module_does_not_import_dagster() -> None:
    code = ("import sys, wattcounts_pipeline.backends.transformers_tp; "
            "assert 'dagster' not in sys.modules, 'dagster imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(paths.REPO_ROOT), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_workers_exit_when_rank_0_dies_mid_load(tmp_path: Path) -> None:
    """A measuring process killed while a worker waits in the group's rendezvous leaves no worker behind."""
    script = tmp_path / "rank0.py"
    script.write_text(
        "import json, sys, time\n"
        "from wattcounts_pipeline.backends import transformers_tp as tp\n"
        "from wattcounts_pipeline.core.specs import ExperimentSpec\n"
        "def hang(self, *args):\n"
        "    print(self._workers[0].proc.pid, flush=True)\n"
        "    time.sleep(600)\n"
        "tp.TensorParallelTransformersBackend._join = hang\n"
        "spec = ExperimentSpec.from_dict(json.loads(sys.argv[1]))\n"
        "tp.TensorParallelTransformersBackend(spec, tp.PACKAGE_PARENT / 'models' / 'tiny-llama').load()\n")
    spec = _spec(parallelism="tensor", gpus=2)
    rank0 = subprocess.Popen([sys.executable, str(script), json.dumps(spec.to_dict())], cwd=paths.REPO_ROOT,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert rank0.stdout is not None
        worker_pid = int(rank0.stdout.readline())  # the worker said ready and now waits for rank 0 to join
    finally:
        rank0.kill()
        rank0.wait()
    deadline = time.monotonic() + 15
    while not _gone(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(worker_pid)
