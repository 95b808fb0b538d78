"""How far can the NVML meter be trusted? Measured on a real GPU under an 8B-class bf16 decode load.

Stages (all by default, in this order; --stages picks some):
  idle           ~10 s of idle power with the CUDA context up (needed for idle-subtracted J/token);
  overhead       the sampler thread's cost: ~1 s blocks of fixed decode with the sampler on and off in ABBA
                 order, on the compiled path at batch 1 (GPU-bound) and eager `generate` (host-bound), and
                 the thread's own CPU time;
  reps           five repetitions of one fixed eager `generate` job (batch 32, ~8 s): J/token and its CV;
  reps_compiled  the same through the compiled static-cache decoder (backends/static_decode.py: CUDA
                 graphs) at batch 256, a GPU-bound job, since eager decode is bound by the host CPU;
  windows        windows of 1, 2, 5, 10 and 15 s, nested, during continuous decode: the energy counter
                 against the integrated instantaneous-power trace.

Results go line by line (JSON lines, flushed) to --out / $OUT, with raw power traces that become replay
fixtures. One process, about 5 minutes on an H100/H200:

    PYTHONUNBUFFERED=1 python benchmarks/meter_fidelity.py --out "$OUT"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wattcounts_pipeline.core.stats import summarize
from wattcounts_pipeline.meters.base import EnergyReading
from wattcounts_pipeline.meters.nvml import NvmlMeter
from wattcounts_pipeline.meters.protocol import power_series, steady_window
from wattcounts_pipeline.meters.replay import write_trace

logger = logging.getLogger("meter_fidelity")

STAGES = ("idle", "overhead", "reps", "reps_compiled", "windows")
WINDOW_SIZES_S = (1.0, 2.0, 5.0, 10.0, 15.0)
FLOORS = {"counter_vs_integration_pct_ge_10s": 2.0, "sampler_overhead_pct": 0.5, "j_per_token_cv_pct": 2.0}
# Seconds each stage needs (at --time-scale 1); a stage starts only if this much of the budget is left.
STAGE_COST_S = {"idle": 15, "overhead": 120, "reps": 60, "reps_compiled": 150, "windows": 55}


class Results:
    """Appends one JSON object per line and flushes, so a killed run still leaves what it measured."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("a")
        self.started_s = time.monotonic()

    def emit(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "elapsed_s": round(time.monotonic() - self.started_s, 2), **fields}
        self._handle.write(json.dumps(record, default=str) + "\n")
        self._handle.flush()
        print(json.dumps(record, default=str)[:600], flush=True)


def llama_8b_config(tiny: bool) -> Any:
    from transformers import LlamaConfig

    if tiny:  # a CPU smoke test of this script, not a measurement
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096,
                           eos_token_id=2, bos_token_id=1, pad_token_id=0)
    return LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192,
                       rope_theta=500000.0,  # type: ignore[call-arg]  # transformers 5 maps it into rope_parameters
                       rms_norm_eps=1e-5, eos_token_id=2, bos_token_id=1, pad_token_id=0)


def gpu_energy(reading: EnergyReading) -> tuple[float, float]:
    """(counter J, integrated-power J) summed over the GPUs."""
    counter_j = reading.domain_energy_j("gpu") or 0.0
    integrated_j = sum(v for k, v in reading.integrated_energy_j.items() if k.startswith("gpu"))
    return counter_j, integrated_j


def pct_diff(counter_j: float, integrated_j: float) -> float:
    return 100.0 * (integrated_j - counter_j) / counter_j if counter_j else float("nan")


@dataclass
class Bench:
    """What the stages share: the meter, the model, the results file and the measured rates."""

    args: argparse.Namespace
    results: Results
    meter: NvmlMeter
    torch: Any
    model: Any = None
    decoder: Any = None  # the compiled static-cache decoder, built on first use
    trace_meta: dict[str, Any] = field(default_factory=dict)
    idle_gpu_w: float | None = None
    steps_per_s: float = 10.0

    def scaled(self, seconds: float) -> float:
        return seconds * self.args.time_scale

    def sync(self) -> None:
        if self.args.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def inputs(self, batch: int) -> tuple[Any, Any]:
        generator = self.torch.Generator(device=self.args.device).manual_seed(0)
        ids = self.torch.randint(3, self.model.config.vocab_size, (batch, self.args.input_tokens),
                                 device=self.args.device, generator=generator)
        return ids, self.torch.ones_like(ids)

    def generate(self, new_tokens: int, batch: int, static_cache: bool = False) -> tuple[int, float]:
        """Fixed-length greedy decode, eager `generate` or the compiled static-cache loop the transformers
        backend uses (backends/static_decode.py); returns (generated tokens, seconds)."""
        input_ids, attention_mask = self.inputs(batch)
        self.sync()
        start = time.perf_counter()
        if static_cache:
            if self.decoder is None:
                from wattcounts_pipeline.backends.static_decode import StaticDecoder

                self.decoder = StaticDecoder(self.model)
            generated = self.decoder.generate(input_ids, attention_mask, new_tokens).numel()
        else:
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                         pad_token_id=0)
            generated = (output.shape[1] - self.args.input_tokens) * batch
        self.sync()
        elapsed_s = time.perf_counter() - start
        if generated != new_tokens * batch:
            raise RuntimeError(f"asked for {new_tokens} tokens per row, got {generated // batch}")
        return generated, elapsed_s


def stage_idle(b: Bench) -> None:
    """Idle power with the CUDA context up (it costs a few watts) but nothing running."""
    time.sleep(b.scaled(2.0))
    b.meter.begin_window("idle")
    time.sleep(b.scaled(10.0))
    idle = b.meter.end_window("idle")
    counter_j, integrated_j = gpu_energy(idle)
    b.idle_gpu_w = counter_j / idle.duration_s
    b.results.emit("idle", duration_s=idle.duration_s, power_w=b.idle_gpu_w, method=idle.method, flags=idle.flags,
                   integrated_power_w=integrated_j / idle.duration_s, pct_diff=pct_diff(counter_j, integrated_j),
                   temperature_c=idle.device_info["temperature_end_c"], samples=len(idle.samples))
    write_trace(b.args.out / "trace_idle.jsonl", idle.samples, {**b.trace_meta, "workload": "idle, CUDA context up"})


def abba_blocks(b: Bench, run_block: Callable[[], object], blocks: int) -> list[tuple[bool, float]]:
    """(sampler on?, seconds) per block, in on-off-off-on order: a linear drift of the host cancels in
    each group of four."""
    timed: list[tuple[bool, float]] = []
    for on in [True, False, False, True] * max(1, blocks // 4):
        if on:
            b.meter.sampler.start()
        else:
            b.meter.sampler.stop()
        b.sync()
        t0 = time.perf_counter()
        run_block()
        b.sync()
        timed.append((on, time.perf_counter() - t0))
    b.meter.sampler.start()
    return timed


def overhead_estimates_pct(timed: list[tuple[bool, float]]) -> list[float]:
    """One estimate per ABBA group: how much longer its two sampler-on blocks took than its two off ones."""
    estimates = []
    for i in range(0, len(timed) - 3, 4):
        group = timed[i: i + 4]
        on_s = sum(s for on, s in group if on)
        off_s = sum(s for on, s in group if not on)
        estimates.append(100.0 * (on_s / off_s - 1))
    return estimates


def stage_overhead(b: Bench) -> None:
    """The sampler switched on and off in alternate blocks of a fixed decode, on two paths: compiled batch 1
    (CUDA graphs, GPU-bound, so block times repeat to ~0.1% and a small effect shows) and eager `generate`
    (host-bound: what the sampler thread takes from the thread that launches the kernels)."""
    compiled_tokens = b.args.overhead_compiled_tokens
    t0 = time.perf_counter()
    b.generate(compiled_tokens, 1, static_cache=True)  # compiles and records the graph for this shape
    compile_s = time.perf_counter() - t0
    eager_tokens = max(8, int(b.scaled(1.0) * b.steps_per_s))
    paths = {"compiled_b1": (lambda: b.generate(compiled_tokens, 1, static_cache=True), compiled_tokens, 1),
             f"eager_b{b.args.batch}": (lambda: b.generate(eager_tokens, b.args.batch), eager_tokens, b.args.batch)}
    for name, (run_block, tokens, batch) in paths.items():
        cpu_before_s, wall_before_s = b.meter.sampler.cpu_s, time.perf_counter()
        timed = abba_blocks(b, run_block, b.args.overhead_blocks)
        on_wall_s = sum(s for on, s in timed if on)
        estimates = overhead_estimates_pct(timed)
        stats = summarize(estimates) if len(estimates) >= 2 else None
        b.results.emit("overhead", path=name, batch=batch, tokens_per_block=tokens * batch, blocks=len(timed),
                       sample_period_s=b.meter.sampler.period_s, compile_s=compile_s if name == "compiled_b1" else None,
                       tokens_per_s_on=tokens * batch * sum(1 for on, _ in timed if on) / on_wall_s,
                       tokens_per_s_off=tokens * batch * sum(1 for on, _ in timed if not on)
                       / sum(s for on, s in timed if not on),
                       overhead_pct=stats.mean if stats else None,
                       overhead_ci95_pct=[stats.ci95_low, stats.ci95_high] if stats else None,
                       block_cv_pct=100.0 * statistics.stdev([s for _, s in timed]) / statistics.fmean([s for _, s in timed]),
                       sampler_cpu_pct_of_one_core=100.0 * (b.meter.sampler.cpu_s - cpu_before_s) / on_wall_s,
                       wall_s=time.perf_counter() - wall_before_s,
                       block_s=[[on, round(s, 5)] for on, s in timed])


def run_reps(b: Bench, name: str, batch: int, new_tokens: int, static_cache: bool) -> None:
    """Five back-to-back repetitions of one fixed job, each its own window: J/token gross and idle-subtracted."""
    reps = 5
    per_token: list[float] = []
    per_token_net: list[float] = []
    b.meter.begin_window(name)
    for rep in range(reps):
        b.meter.begin_window(f"{name}-{rep}", sync=b.sync)
        tokens, seconds = b.generate(new_tokens, batch, static_cache=static_cache)
        reading = b.meter.end_window(f"{name}-{rep}", sync=b.sync)
        counter_j, integrated_j = gpu_energy(reading)
        t_s, power_w = power_series(reading.samples)
        steady_s = steady_window(t_s, power_w) if len(t_s) >= 3 else None
        per_token.append(counter_j / tokens)
        if b.idle_gpu_w is not None:
            per_token_net.append((counter_j - b.idle_gpu_w * reading.duration_s) / tokens)
        b.results.emit("rep", stage=name, rep=rep, batch=batch, tokens=tokens, duration_s=reading.duration_s,
                       counter_j=counter_j, integrated_j=integrated_j, pct_diff=pct_diff(counter_j, integrated_j),
                       j_per_token=per_token[-1], j_per_token_net=per_token_net[-1] if per_token_net else None,
                       tokens_per_s=tokens / seconds, mean_power_w=counter_j / reading.duration_s,
                       steady_window_s=steady_s, temperature_start_c=reading.device_info["temperature_start_c"],
                       temperature_end_c=reading.device_info["temperature_end_c"],
                       sm_clock_min_mhz=min((s.sm_clock_mhz or 0 for s in reading.samples), default=None),
                       method=reading.method, flags=reading.flags)
    whole = b.meter.end_window(name)
    write_trace(b.args.out / f"trace_{name}.jsonl", whole.samples,
                {**b.trace_meta, "workload": f"5 x fixed greedy decode of {new_tokens} tokens, random-weight "
                                             f"Llama-8B config, bf16, batch {batch}, {b.args.input_tokens} input "
                                             f"tokens{', static cache (compiled)' if static_cache else ', eager'}"})
    stats = summarize(per_token)
    stats_net = summarize(per_token_net) if len(per_token_net) > 1 else None
    b.results.emit("j_per_token", stage=name, batch=batch, tokens_per_rep=new_tokens * batch, n=stats.n,
                   mean=stats.mean, std=stats.std, ci95=[stats.ci95_low, stats.ci95_high], cv_pct=100.0 * stats.cv,
                   net_mean=stats_net.mean if stats_net else None,
                   net_cv_pct=100.0 * stats_net.cv if stats_net else None)


def stage_reps(b: Bench) -> None:
    new_tokens = min(1024, max(32, int(b.scaled(8.0) * b.steps_per_s)))
    run_reps(b, "reps", b.args.batch, new_tokens, static_cache=False)


def stage_reps_compiled(b: Bench) -> None:
    batch, new_tokens = b.args.compiled_batch, b.args.compiled_tokens
    t0 = time.perf_counter()
    b.generate(new_tokens, batch, static_cache=True)  # compiles the decode step (the cache shape is fixed)
    compile_s = time.perf_counter() - t0
    tokens, seconds = b.generate(new_tokens, batch, static_cache=True)
    b.results.emit("compiled_warmup", batch=batch, new_tokens=new_tokens, first_call_s=compile_s,
                   second_call_s=seconds, tokens_per_s=tokens / seconds)
    run_reps(b, "reps_compiled", batch, new_tokens, static_cache=True)


def stage_windows(b: Bench) -> None:
    """Nested windows of every size opened together, during decode that runs on in another thread."""
    stop = threading.Event()
    workload_error: list[BaseException] = []

    def decode_forever() -> None:
        try:
            while not stop.is_set():
                b.generate(max(32, int(b.scaled(6.0) * b.steps_per_s)), b.args.batch)
        except Exception as exc:  # noqa: BLE001 - surfaced in the main thread
            workload_error.append(exc)

    worker = threading.Thread(target=decode_forever, name="decode", daemon=True)
    worker.start()
    time.sleep(b.scaled(3.0))  # past the first prefill and the clock ramp
    rows: list[dict[str, Any]] = []
    b.meter.begin_window("sweep")
    try:
        for round_no in range(b.args.rounds):
            opened = time.perf_counter()
            for size_s in WINDOW_SIZES_S:
                b.meter.begin_window(f"w{round_no}-{size_s:g}")
            for size_s in WINDOW_SIZES_S:
                time.sleep(max(0.0, opened + b.scaled(size_s) - time.perf_counter()))
                reading = b.meter.end_window(f"w{round_no}-{size_s:g}")
                counter_j, integrated_j = gpu_energy(reading)
                row = {"round": round_no, "window_s": b.scaled(size_s), "duration_s": reading.duration_s,
                       "counter_j": counter_j, "integrated_j": integrated_j,
                       "pct_diff": pct_diff(counter_j, integrated_j), "mean_power_w": counter_j / reading.duration_s,
                       "samples": len(reading.samples), "method": reading.method, "flags": reading.flags}
                rows.append(row)
                b.results.emit("window", **row)
            if workload_error:
                raise RuntimeError("the decode workload failed") from workload_error[0]
        sweep = b.meter.end_window("sweep")
    finally:
        stop.set()
        worker.join()
    write_trace(b.args.out / "trace_decode_windows.jsonl", sweep.samples,
                {**b.trace_meta, "workload": f"continuous greedy decode, random-weight Llama-8B config, bf16, "
                                             f"batch {b.args.batch}, {b.args.input_tokens} input tokens, eager"})
    for size_s in WINDOW_SIZES_S:
        diffs = [r["pct_diff"] for r in rows if r["window_s"] == b.scaled(size_s)]
        b.results.emit("window_summary", window_s=b.scaled(size_s), n=len(diffs),
                       mean_pct_diff=statistics.fmean(diffs), max_abs_pct_diff=max(abs(d) for d in diffs))


STAGE_FUNCTIONS = {"idle": stage_idle, "overhead": stage_overhead, "reps": stage_reps,
                   "reps_compiled": stage_reps_compiled, "windows": stage_windows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default $OUT)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {STAGES}")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny model: smoke-test this script on a CPU")
    parser.add_argument("--time-scale", type=float, default=1.0, help="scale every duration (smoke tests)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compiled-batch", type=int, default=256)
    parser.add_argument("--compiled-tokens", type=int, default=256, help="per repetition (~10 s at batch 256)")
    parser.add_argument("--overhead-blocks", type=int, default=32, help="sampler on/off blocks per path (ABBA)")
    parser.add_argument("--overhead-compiled-tokens", type=int, default=256, help="tokens per compiled block")
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of nested windows")
    parser.add_argument("--sample-period-s", type=float, default=0.05)
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip stages that would run past this")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out or set $OUT")
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}")
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    results = Results(args.out / "meter_fidelity.jsonl")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    meter = NvmlMeter(sample_period_s=args.sample_period_s, min_counter_window_s=0.5)
    info = meter.describe()
    results.emit("environment", gpu=info, torch=torch.__version__, torch_cuda=torch.version.cuda,
                 transformers=transformers.__version__, python=platform.python_version(),
                 cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), host_cpus=os.cpu_count(),
                 args={k: str(v) for k, v in vars(args).items()})
    bench = Bench(args=args, results=results, meter=meter, torch=torch)
    bench.trace_meta = {"gpu_name": info["gpu_name"], "driver_version": info["driver_version"],
                        "cuda_driver_version": info["cuda_driver_version"], "power_limit_w": info["power_limit_w"],
                        "sample_period_s": args.sample_period_s, "torch": torch.__version__,
                        "transformers": transformers.__version__}
    torch.zeros(1, device=args.device)  # the CUDA context, before idle is measured
    bench.sync()

    for stage in stages:
        if stage != "idle" and bench.model is None:
            t0 = time.perf_counter()
            with torch.device(args.device):
                bench.model = AutoModelForCausalLM.from_config(llama_8b_config(args.tiny), dtype=torch.bfloat16)
            bench.model.eval()
            bench.sync()
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(2):
                tokens, seconds = bench.generate(32, args.batch)
            bench.steps_per_s = tokens / seconds / args.batch
            results.emit("model", build_s=build_s, warmup_s=time.perf_counter() - t0,
                         warm_tokens_per_s=tokens / seconds,
                         parameters=sum(p.numel() for p in bench.model.parameters()))
        left_s = args.budget_s - (time.monotonic() - results.started_s)
        if left_s < bench.scaled(STAGE_COST_S[stage]):
            results.emit("skipped", stage=stage, time_left_s=left_s)
            continue
        try:
            STAGE_FUNCTIONS[stage](bench)
        except Exception as exc:  # one failed stage must not cost the others their results
            logger.exception("stage %s failed", stage)
            results.emit("stage_failed", stage=stage, error=f"{type(exc).__name__}: {exc}")
    meter.close()
    report_floors(results)
    return 0


def report_floors(results: Results) -> None:
    """The floors, read back from the results file so a partial run still reports what it has."""
    records = [json.loads(line) for line in results.path.read_text().splitlines()]
    long_windows = [r for r in records if r["kind"] == "window" and r["window_s"] >= 10.0]
    measured: dict[str, float | None] = {
        "counter_vs_integration_pct_ge_10s": max((abs(r["pct_diff"]) for r in long_windows), default=None)}
    for r in records:
        if r["kind"] == "overhead":  # the upper end of the 95% CI: the floor holds only if the whole CI is under it
            ci = r["overhead_ci95_pct"]
            measured[f"sampler_overhead_pct[{r['path']}]"] = ci[1] if ci else None
        if r["kind"] == "j_per_token":
            measured[f"j_per_token_cv_pct[{r['stage']}]"] = r["cv_pct"]
            measured[f"j_per_token_net_cv_pct[{r['stage']}]"] = r["net_cv_pct"]
    floor_of = {k: FLOORS[k.split("[")[0].replace("_net", "")] for k in measured}
    verdict = {k: (None if v is None else v <= floor_of[k]) for k, v in measured.items()}
    results.emit("floors", floors=floor_of, measured=measured, pass_=verdict)
    print("\nfloor                                             measured   floor   pass")
    for name, value in measured.items():
        shown = "n/a" if value is None else f"{value:8.3f}"
        print(f"{name:48s}{shown:>9s}  {floor_of[name]:6.2f}   {verdict[name]}")


if __name__ == "__main__":
    sys.exit(main())
