"""torchao and bitsandbytes formats through the transformers backend, for real on the CPU on a tiny shape:
what gets quantized, what a row records, the saved random checkpoint bitsandbytes loads, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO
from wattcounts_pipeline.backends.quantizers import apply_torchao, library, random_checkpoint
from wattcounts_pipeline.backends.static_decode import StaticDecoder
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec, ModelRef, Workload
from wattcounts_pipeline.measure.run import measure_spec
from wattcounts_pipeline.meters.estimate import EstimateMeter

pytest.importorskip("torchao")
pytest.importorskip("bitsandbytes")
TINY = REPO / "models" / "tiny-llama"


def _spec(quantization: str, **engine_args: object) -> ExperimentSpec:
    return ExperimentSpec("t", ModelRef("tiny-llama", "config:models/tiny-llama", weights="random"), "transformers",
                          quantization, "bfloat16", Workload("w", input_tokens=8, output_tokens=6, num_requests=2),
                          engine_args=tuple(sorted({"device": "cpu", **engine_args}.items())), repetitions=1,
                          idle_s=0.1)


def _tiny_model() -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(TINY), dtype=torch.bfloat16).eval()


def _body_linears(model: torch.nn.Module) -> int:
    head = model.get_output_embeddings()
    return sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTCOUNTS_HOME", str(tmp_path / "home"))


def test_torchao_int8_quantizes_every_body_linear_and_keeps_the_head() -> None:
    model = _tiny_model()
    reference = model(torch.tensor([[1, 2, 3, 4]])).logits
    info = apply_torchao(model, "torchao-int8-wo")
    assert info["quantizer"] == "torchao" and info["quantized_linears"] == _body_linears(model) > 0
    assert type(model.model.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
    assert type(model.lm_head.weight).__name__ == "Parameter"  # lm_head stays in bf16, as in vLLM and llama.cpp
    quantized = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert not torch.equal(quantized, reference)  # the weights really changed ...
    assert torch.nn.functional.cosine_similarity(quantized.flatten().float(), reference.flatten().float(), dim=0) > 0.99


def test_torchao_int8_row_records_the_library_and_scheme() -> None:
    runs = measure_spec(_spec("torchao-int8-wo"), EstimateMeter()).runs
    args = json.loads(runs["engine_args_json"].iloc[0])
    assert args["quantizer"] == "torchao" and args["quantizer_version"] == "0.18.0"
    assert args["quant_scheme"].startswith("int8 weight-only")
    assert list(runs["quantization"]) == ["torchao-int8-wo"]
    assert runs["output_tokens_total"].iloc[0] == 2 * 6


def test_torchao_int8_compiled_step_decodes_the_eager_tokens() -> None:
    """torchao is meant to run under torch.compile: the compiled one-token step (inductor fusing the dequant into
    the matmul) must decode what the eager quantized model decodes."""
    model = _tiny_model()
    apply_torchao(model, "torchao-int8-wo")
    ids, mask = torch.tensor([[5, 6, 7, 8]]), torch.ones(1, 4, dtype=torch.long)
    eager = StaticDecoder(model, mode="eager").generate(ids, mask, 5)
    compiled = StaticDecoder(model, mode="compile").generate(ids, mask, 5)
    assert torch.equal(eager, compiled)


@pytest.mark.parametrize("quantization, scheme", [("bnb-nf4", "bitsandbytes NF4"), ("bnb-int8", "bitsandbytes LLM.int8")])
def test_bitsandbytes_loads_a_saved_random_checkpoint_the_way_users_do(quantization: str, scheme: str) -> None:
    result = measure_spec(_spec(quantization), EstimateMeter())
    args = json.loads(result.runs["engine_args_json"].iloc[0])
    assert args["quantizer"] == "bitsandbytes" and args["quant_scheme"].startswith(scheme)
    assert args["quantized_linears"] == _body_linears(_tiny_model())
    assert result.runs["output_tokens_total"].iloc[0] == 2 * 6


def test_random_checkpoint_is_saved_once_and_a_partial_one_is_never_used(tmp_path: Path) -> None:
    cache = tmp_path / "ckpt"
    cache.mkdir()
    partial = cache / ".tiny-llama-bfloat16-seed0.partial"
    partial.mkdir()
    (partial / "junk").write_text("interrupted save")
    path = random_checkpoint(TINY, torch.bfloat16, cache)
    assert path.name == "tiny-llama-bfloat16-seed0" and (path / "config.json").is_file()
    assert not partial.exists()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert random_checkpoint(TINY, torch.bfloat16, cache) == path
    assert (path / "config.json").stat().st_mtime_ns == stamp  # reused, not rewritten


def test_unknown_and_unsupported_formats_are_refused_clearly() -> None:
    assert library("BF16") is None and library("Q4_K_M") is None and library("FP8") is None
    with pytest.raises(BackendError, match="unknown quantization 'torchao-int3'.*torchao-fp8-row"):
        library("torchao-int3")
    with pytest.raises(BackendError, match="torchao could not apply 'torchao-fp8-row' on this device"):
        apply_torchao(_tiny_model(), "torchao-fp8-row")  # float8 needs compute capability 8.9 or newer
    with pytest.raises(BackendError, match="runs on one device only"):
        measure_spec(_spec("bnb-nf4", parallelism="pipeline", gpus=2), EstimateMeter())


def test_the_retired_fp8_path_gains_no_spec_that_is_not_recorded() -> None:
    """The project's own FP8 path lost the engines issue's paired test against torchao's float8 (README, "The
    compiled pair"): its recorded rows stay reproducible, and no experiment file may ask for a new one."""
    from wattcounts_pipeline.core.specs import load_experiments
    from wattcounts_pipeline.measure.store import done_keys

    specs = load_experiments(sorted((REPO / "experiments").glob("*.yaml")))
    recorded = set().union(*(done_keys(d) for d in (REPO / "data" / "measurements").iterdir() if d.is_dir()))
    fp8 = {key for key, spec in specs.items() if spec.quantization == "FP8"}
    assert len(fp8) == 124 and fp8 <= recorded
