"""Hugging Face transformers with tensor parallelism over several GPUs, driven from the measuring process.

The measuring process is rank 0: it keeps the tokenizer, the timings and the results, so measure.py
drives this backend like the single-GPU one. `load()` starts one worker process per other GPU
(`python -m wattcounts_pipeline.backends.transformers_tp --worker`, the same interpreter and
environment, plus RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT), every rank joins one
torch.distributed process group (NCCL on CUDA, gloo on CPU) and loads its shard with transformers'
own plan (`DistributedConfig(tp_plan="auto")`, i.e. the model's `base_model_tp_plan`).

Commands reach the workers as JSON lines on their stdin, not through a collective: between windows
measure.py idles and cools down for as long as it needs, and a worker parked in a collective would hit
the process group's timeout (NCCL's watchdog then kills it). So collectives only run inside `load` and
`generate`, where all ranks work. Each worker runs `TransformersBackend.generate` itself, the very code
rank 0 runs, so the ranks issue identical `model.generate` calls in lockstep; it answers one line per
command, so its errors surface on rank 0.

Random weights (a config-only folder): rank 0 builds them exactly as `TransformersBackend` does
(`torch.manual_seed(0)`, `from_config` on its device), saves them as safetensors in a temp folder
(on $TMPDIR: it needs the model's size on disk) and every rank loads that folder; the folder goes on
`close()`. So the TP model has the very weights the single-GPU backend measures.

A worker that dies makes rank 0 raise BackendError with the worker's log tail: a watchdog thread polls
the workers and, on NCCL, aborts the process group so a rank 0 stuck in a collective is released; gloo
fails by itself once a peer's socket closes. Every wait is bounded: `tp_timeout_s` (default 600) for the
process group's collectives and a generate call's answers, `tp_load_timeout_s` (default 1800) for start
and loading. close() leaves the group on all ranks at once (NCCL's teardown waits for every rank). A
worker whose rank 0 vanishes (stdin closed, or its parent gone while it waits in a collective) exits.

engine_args: `parallelism: tensor`, `gpus` (world size), `tp_plan` (default "auto"), `tp_timeout_s`,
`tp_load_timeout_s`, `device` (auto | cuda | cpu), `compile` (false or true, as in TransformersBackend).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from wattcounts_pipeline.backends.base import Prompt, RequestResult
from wattcounts_pipeline.backends.server import HOST, free_port, stop_process_group, tail
from wattcounts_pipeline.backends.transformers_backend import TransformersBackend
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)

WORKER_MODULE = "wattcounts_pipeline.backends.transformers_tp"
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # so `-m wattcounts_pipeline...` imports without install
# Rank 0 is the measuring process: on an NCCL timeout abort the communicator (→ an error we turn into a
# BackendError) instead of torch's default of tearing the whole process down.
RANK0_ENV = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "2"}


class TensorParallelTransformersBackend(TransformersBackend):
    """TransformersBackend whose model is split over `spec.gpus` ranks; this process is rank 0."""

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        args = spec.engine_kwargs
        self.world_size = spec.gpus
        if spec.parallelism != "tensor" or self.world_size < 2:
            raise BackendError(f"transformers TP: needs parallelism 'tensor' and gpus >= 2, got "
                               f"{spec.parallelism!r} on {self.world_size} GPU(s)")
        self.tp_plan: str | dict[str, str] = args.get("tp_plan", "auto")
        self.timeout_s = float(args.get("tp_timeout_s", 600.0))
        # worker start and shard loading (a 70B checkpoint read by every rank) can outlast one collective
        self.load_timeout_s = float(args.get("tp_load_timeout_s", max(self.timeout_s, 1800.0)))
        self.rank = 0
        self.pg_backend = ""
        self.device: str = ""
        self._workers: list[_Worker] = []
        self._tmpdir: Path | None = None
        self._saved_env: dict[str, str | None] = {}
        self._rank0_only_env: set[str] = set()
        self._watchdog: threading.Thread | None = None
        self._closing = threading.Event()
        self._failure = ""  # set by the watchdog: which worker died, and how
        self._broken = False
        self._sent_prompts: list[Prompt] | None = None
        self._random_init_device = ""

    # ---- shared by rank 0 and workers -------------------------------------------------------------

    def _join(self, rank: int, port: int, weights: Path, pg_backend: str) -> None:
        """Join the process group and load this rank's shard (collective: every rank calls it)."""
        import torch
        import torch.distributed as dist
        from transformers import AutoModelForCausalLM

        self.rank, self.pg_backend = rank, pg_backend
        device_id = None
        if pg_backend == "nccl":
            torch.cuda.set_device(rank)
            device_id = torch.device("cuda", rank)
        dist.init_process_group(pg_backend, init_method=f"tcp://{HOST}:{port}", rank=rank,
                                world_size=self.world_size, timeout=timedelta(seconds=self.timeout_s),
                                device_id=device_id)
        try:  # transformers >= 5.x (5.17 and 5.24 both have it; the bare tp_plan kwarg is deprecated there)
            from transformers.distributed import DistributedConfig

            tp_kwargs: dict[str, Any] = {
                "distributed_config": DistributedConfig(tp_plan=self.tp_plan,  # type: ignore[arg-type]  # "auto" or a plan
                                                        tp_size=self.world_size)}
        except ImportError:  # 4.5x: the plan is a from_pretrained argument
            tp_kwargs = {"tp_plan": self.tp_plan, "tp_size": self.world_size}
        self.model = AutoModelForCausalLM.from_pretrained(weights, dtype=self._dtype(), **tp_kwargs)
        self.model.eval()
        self.device = f"cuda:{rank}" if pg_backend == "nccl" else "cpu"

    # ---- rank 0 -------------------------------------------------------------------------------------

    def load(self) -> None:
        import torch
        import torch.distributed as dist
        import transformers
        from transformers import AutoTokenizer

        if not dist.is_available():
            raise BackendError("transformers TP: this torch build has no torch.distributed")
        if dist.is_initialized():
            raise BackendError("transformers TP: this process already has a torch.distributed process group")
        cuda = torch.cuda.is_available()
        wanted = self.device_name if self.device_name != "auto" else ("cuda" if cuda else "cpu")
        if wanted.split(":")[0] != ("cuda" if cuda else "cpu"):
            # transformers builds its device mesh on torch's accelerator, whatever we ask for
            raise BackendError(f"transformers TP: device {wanted!r} unsupported here; tensor parallelism runs on "
                               f"{'cuda' if cuda else 'cpu'} (torch's accelerator)")
        if cuda and torch.cuda.device_count() < self.world_size:
            raise BackendError(f"transformers TP: {self.world_size} GPUs asked for, "
                               f"{torch.cuda.device_count()} visible")
        pg_backend = "nccl" if cuda else "gloo"
        if pg_backend == "gloo" and not dist.is_gloo_available():
            raise BackendError("transformers TP: torch.distributed has no gloo backend for a CPU run")
        if self.spec.quantization.upper() == "FP8":
            raise BackendError("transformers TP: FP8 linears are not supported with tensor parallelism")
        path = Path(self.model_path)
        if path.suffix == ".gguf":
            raise BackendError("transformers TP: GGUF files are not supported with tensor parallelism; "
                               "use an hf: checkpoint (or the single-GPU backend)")
        self._versions = {"framework_version": transformers.__version__, "torch_version": torch.__version__}
        self._closing, self._broken, self._failure = threading.Event(), False, ""  # load() again after close()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="wattcounts-tp-"))
        try:
            tok_path = self._tokenizer_path(path) if self.spec.model.weights == "random" else path
            self.tokenizer = AutoTokenizer.from_pretrained(tok_path)
            if self.tokenizer.pad_token_id is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
            weights = self._save_random(path, cuda) if self.spec.model.weights == "random" else path
            port = free_port()
            self._set_env(port)
            self._start_workers(port, weights, pg_backend)
            self._expect_all("ready", self.load_timeout_s)
            self._join(0, port, weights, pg_backend)
            self._expect_all("loaded", self.load_timeout_s)
        except BackendError:
            self.close()
            raise
        except Exception as exc:
            failure = self._failed("load", exc)
            self.close()
            raise failure from exc
        except BaseException:
            self.close()
            raise
        logger.info("transformers TP: %d ranks over %s loaded %s", self.world_size, pg_backend, path)

    def _save_random(self, path: Path, cuda: bool) -> Path:
        """Random weights as TransformersBackend builds them, saved where every rank can load them."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        assert self._tmpdir is not None
        config = AutoConfig.from_pretrained(path)
        model = None
        for device in (["cuda"] if cuda else []) + ["cpu"]:
            torch.manual_seed(0)
            try:
                with torch.device(device):
                    model = AutoModelForCausalLM.from_config(config, dtype=self._dtype())
            except torch.OutOfMemoryError:
                logger.warning("transformers TP: random %s does not fit one GPU; built on CPU (other weights than "
                               "the single-GPU backend's)", path.name)
                model = None
                torch.cuda.empty_cache()
                continue
            self._random_init_device = device
            break
        assert model is not None
        out = self._tmpdir / "weights"
        model.save_pretrained(out)
        del model
        if cuda:
            torch.cuda.empty_cache()
        return out

    def _set_env(self, port: int) -> None:
        """What transformers reads from the environment of a rank (5.17 needs LOCAL_RANK on CUDA)."""
        values = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": str(self.world_size),
                  "LOCAL_WORLD_SIZE": str(self.world_size), "MASTER_ADDR": HOST, "MASTER_PORT": str(port)}
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        for key, value in RANK0_ENV.items():
            if key not in os.environ:
                self._saved_env.setdefault(key, None)
                self._rank0_only_env.add(key)
                os.environ[key] = value

    def _start_workers(self, port: int, weights: Path, pg_backend: str) -> None:
        assert self._tmpdir is not None
        pythonpath = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")) if p)
        job = {"spec": self.spec.to_dict(), "model_path": str(self.model_path), "weights": str(weights),
               "port": port, "pg_backend": pg_backend, "pad_token_id": self.tokenizer.pad_token_id}
        for rank in range(1, self.world_size):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(self.world_size),
                   "LOCAL_WORLD_SIZE": str(self.world_size), "MASTER_ADDR": HOST, "MASTER_PORT": str(port),
                   "PYTHONPATH": pythonpath}
            for key in self._rank0_only_env:  # workers keep torch's default: a timed-out worker dies
                env.pop(key, None)
            log_path = self._tmpdir / f"worker-{rank}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, "--worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
            worker = _Worker(rank, proc, log_path)
            self._workers.append(worker)
            worker.send({**job, "rank": rank})
            logger.info("transformers TP: rank %d is pid %d (log %s)", rank, proc.pid, log_path)
        self._watchdog = threading.Thread(target=self._watch, name="wattcounts-tp-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Notice a dead worker at once; on NCCL, abort the group so rank 0 is not stuck in a collective."""
        while not self._closing.wait(0.2):
            for worker in self._workers:
                code = worker.proc.poll()
                if code is None:
                    continue
                self._failure = f"tensor-parallel rank {worker.rank} (pid {worker.proc.pid}) exited with code {code}"
                self._broken = True
                logger.error("transformers TP: %s", self._failure)
                if self.pg_backend == "nccl":
                    self._abort_group()
                return

    def _leave_group(self, grace_s: float) -> None:
        """destroy_process_group, bounded: a broken NCCL group is aborted instead (destroy would wait for
        ranks that are gone), and a destroy that does not return in `grace_s` is left behind in its thread."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if self._broken and self.pg_backend == "nccl":
            self._abort_group()
            return
        if not _destroy_group_within(grace_s):
            logger.warning("transformers TP: destroy_process_group did not return within %.0f s", grace_s)

    @staticmethod
    def _abort_group() -> None:
        import torch.distributed as dist

        try:
            if dist.is_initialized():
                dist.distributed_c10d._abort_process_group()
        except Exception as exc:  # noqa: BLE001 - experimental torch API: best effort, rank 0 raises anyway
            logger.warning("transformers TP: aborting the process group failed: %s", exc)

    def _dead_worker(self, grace_s: float = 3.0) -> _Worker | None:
        """A worker that has exited (waiting `grace_s` for one whose death caused rank 0's error)."""
        deadline = time.monotonic() + grace_s
        while True:
            for worker in self._workers:
                if worker.proc.poll() is not None:
                    return worker
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _failed(self, what: str, exc: BaseException | None = None, grace_s: float = 3.0) -> BackendError:
        """A BackendError naming the dead worker (with its log tail) or rank 0's own error."""
        self._broken = True
        worker = self._dead_worker(grace_s)
        if worker is not None:
            return BackendError(f"transformers TP: rank {worker.rank} (pid {worker.proc.pid}) exited with code "
                                f"{worker.proc.returncode} during {what}\n--- rank {worker.rank} log tail ---\n"
                                f"{tail(worker.log_path)}")
        return BackendError(f"transformers TP: {what} failed on rank 0: {type(exc).__name__}: {exc}")

    def _expect_all(self, event: str, timeout_s: float) -> None:
        """One `event` line from every worker within `timeout_s`, else a BackendError."""
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            reply = worker.receive(deadline)
            if reply is None:
                raise self._failed(f"'{event}'")
            if reply.get("event") == "error":
                self._broken = True
                raise BackendError(f"transformers TP: rank {worker.rank} failed before '{event}':\n{reply['error']}")
            if reply.get("event") != event:
                self._broken = True
                raise BackendError(f"transformers TP: rank {worker.rank} answered {reply} instead of '{event}'")

    def sync(self) -> None:
        """This rank's GPU only: the others belong to the workers (a collective ties them together anyway)."""
        import torch

        if self.pg_backend == "nccl" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        if self.model is None:
            raise BackendError("transformers TP: generate() before load()")
        if self._broken:
            raise BackendError(f"transformers TP: the process group is broken ({self._failure or 'earlier error'}); "
                               "close() and load() again")
        if self._dead_worker(0.0) is not None:
            raise self._failed("generate", grace_s=0.0)
        # measure.py sends the same prompt list again and again: ship it only when it changes
        same = prompts is self._sent_prompts or prompts == self._sent_prompts
        cmd: dict[str, Any] = {"cmd": "generate", "batch_size": batch_size}
        if not same:
            cmd["prompts"] = [[list(p.token_ids), p.max_new_tokens] for p in prompts]
        try:
            for worker in self._workers:
                worker.send(cmd)
        except OSError as exc:
            raise self._failed("generate", exc) from exc
        self._sent_prompts = list(prompts)
        try:
            results = super().generate(prompts, batch_size)
        except Exception as exc:
            raise self._failed("generate", exc) from exc
        self._expect_all("done", self.timeout_s)
        return results

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["devices"] = [f"cuda:{r}" for r in range(self.world_size)] if self.pg_backend == "nccl" else ["cpu"]
        info["engine_args"].pop("device_map", None)  # the pipeline split's summary; TP shards every layer
        info["engine_args"].update(parallelism="tensor", gpus=self.world_size, tp_plan=self.tp_plan,
                                   process_group_backend=self.pg_backend)
        if self._random_init_device:
            info["engine_args"]["random_init_device"] = self._random_init_device
        return info

    def close(self) -> None:
        """Stop the workers (kill them if they hang), leave the process group, restore env, drop temp files."""
        self._closing.set()
        for worker in self._workers:
            try:
                worker.send({"cmd": "stop"})
            except OSError:
                pass
        # a broken group can leave a worker stuck in a collective: no point waiting long for it
        grace_s = 5.0 if self._broken else min(self.timeout_s, 30.0)
        self._leave_group(grace_s)  # at the same time as the workers: NCCL's teardown waits for every rank
        deadline = time.monotonic() + grace_s
        for worker in self._workers:
            try:
                worker.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning("transformers TP: rank %d (pid %d) did not stop: killing it", worker.rank,
                               worker.proc.pid)
            stop_process_group(worker.proc, 5.0)
            worker.close()
        self._workers = []
        if self._watchdog is not None:
            self._watchdog.join(timeout=5.0)
            self._watchdog = None
        self.model = None
        super().close()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env, self._rank0_only_env = {}, set()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._sent_prompts = None


class _Worker:
    """Rank 0's handle on one worker: its process, its JSON-line pipes and its log."""

    def __init__(self, rank: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.rank, self.proc, self.log_path = rank, proc, log_path
        self._buffer = b""

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next reply line, None once the worker has exited; BackendError past `deadline`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendError(f"transformers TP: rank {self.rank} did not answer in time\n"
                                       f"--- rank {self.rank} log tail ---\n{tail(self.log_path)}")
                if sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        self.proc.wait()
                        return None
                    self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def _destroy_group_within(timeout_s: float) -> bool:
    """destroy_process_group in a daemon thread; False if it is still running after `timeout_s`."""
    import torch.distributed as dist

    def destroy() -> None:
        try:
            dist.destroy_process_group()
        except Exception as exc:  # noqa: BLE001 - a group aborted after a crash may not destroy cleanly
            logger.warning("transformers TP: destroying the process group failed: %s", exc)

    thread = threading.Thread(target=destroy, name="wattcounts-tp-destroy", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def _reply(out: IO[str], **msg: Any) -> None:
    out.write(json.dumps(msg) + "\n")
    out.flush()


def worker_main() -> int:
    """A rank > 0: read the job, join the group, then run every generate command rank 0 sends.

    Protocol (JSON lines; everything else the worker prints goes to its log):
      → job {spec, model_path, weights, port, pg_backend, pad_token_id, rank}   ← {"event": "ready"}
      (process group + shard load, with rank 0)                                  ← {"event": "loaded"}
      → {"cmd": "generate", "batch_size": b[, "prompts": [[ids, n], ...]]}      ← {"event": "done"}
      → {"cmd": "stop"}: leave the group (rank 0 does at the same time), exit 0; end of stdin: exit 0 at once.
    Any exception: ← {"event": "error", "error": traceback}, exit 1 at once.
    """
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to the log, not into the protocol
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="wattcounts-tp-parent", daemon=True).start()
    try:
        job = json.loads(sys.stdin.readline())
        import torch  # noqa: F401  (the slow imports, before saying ready)
        from transformers import AutoModelForCausalLM  # noqa: F401

        backend = TensorParallelTransformersBackend(ExperimentSpec.from_dict(job["spec"]), Path(job["model_path"]))
        backend.tokenizer = SimpleNamespace(pad_token_id=job["pad_token_id"])
        _reply(out, event="ready")
        backend._join(int(job["rank"]), int(job["port"]), Path(job["weights"]), job["pg_backend"])
        _reply(out, event="loaded")
        prompts: list[Prompt] = []
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "stop":
                backend.model = None
                if not _destroy_group_within(30.0):  # rank 0 destroys its end at the same time
                    _exit_now(0)
                return 0
            if "prompts" in cmd:
                prompts = [Prompt(tuple(ids), int(n)) for ids, n in cmd["prompts"]]
            TransformersBackend.generate(backend, prompts, int(cmd["batch_size"]))
            _reply(out, event="done")
    except BaseException:  # noqa: BLE001 - whatever it is, rank 0 must hear of it
        traceback.print_exc()
        try:
            _reply(out, event="error", error=traceback.format_exc())
        except OSError:
            pass
        _exit_now(1)
    # end of stdin: rank 0 is gone, and so is any clean way to leave the group
    _exit_now(0)
    return 0


def _exit_with_parent(parent_pid: int) -> None:
    """Rank 0 gone (killed mid-load, say) while this worker waits in a collective: exit, free the GPU."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    print(f"rank 0 (pid {parent_pid}) is gone: exiting", file=sys.stderr, flush=True)
    os._exit(3)


def _exit_now(code: int) -> None:
    """Exit without tearing the process group down: with a peer gone, NCCL's teardown can wait forever."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        sys.exit("usage: python -m wattcounts_pipeline.backends.transformers_tp --worker (started by rank 0)")
    sys.exit(worker_main())
