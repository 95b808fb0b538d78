"""Any OpenAI-compatible server measured as a client: streaming `/v1/completions`, fixed concurrency.

Per request: TTFT is the arrival of the first streamed chunk carrying text, e2e the end of the
stream. Output tokens come from the stream's `usage` when the server sends it, else `max_tokens`
when the server reports `finish_reason == "length"`, else the number of text chunks. Requests are
issued by a pool of `batch_size` threads (closed loop: a thread sends its next request when its
previous one ends), so `batch_size` is the client concurrency. Only the standard library is used.

engine_args: `base_url` (required, e.g. http://127.0.0.1:8000), `model` (served name; default: the
first of `/v1/models`), `api_key_env` (name of the environment variable holding the key; the key is
never logged), `timeout_s` (per socket read), `prompt_format` (`ids`: token ids, `text`: detokenized
text), `fixed_length` (send `min_tokens` and `ignore_eos`; turn off for servers that reject them),
`tokenizer` (a local Hugging Face tokenizer folder; default: the model folder).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattcounts_pipeline.backends.base import HFTokenizerMixin, InferenceBackend, Prompt, RequestResult
from wattcounts_pipeline.core.errors import BackendError
from wattcounts_pipeline.core.specs import ExperimentSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """One request as sent: the prompt payload (token ids or text), its token count, tokens to generate."""

    prompt: list[int] | str
    input_tokens: int
    max_tokens: int


class CompletionClient:
    """Streams `/v1/completions` from one server; thread-safe (one connection per request)."""

    def __init__(self, base_url: str, model: str = "", api_key: str = "", timeout_s: float = 300.0,
                 fixed_length: bool = True, extra_body: dict[str, Any] | None = None) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BackendError(f"openai: base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
        self._parsed = parsed
        self._prefix = parsed.path.rstrip("/").removesuffix("/v1")  # routes below add /v1 themselves
        self.base_url = f"{parsed.scheme}://{parsed.netloc}{self._prefix}"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.fixed_length = fixed_length
        self.extra_body = dict(extra_body or {})  # server-specific request fields (llama-server: cache_prompt)
        self.model = model or self._first_model()

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
        return cls(self._parsed.hostname or "", self._parsed.port, timeout=self.timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _first_model(self) -> str:
        url = self.base_url
        conn = self._connect()
        try:
            conn.request("GET", f"{self._prefix}/v1/models", headers=self._headers())
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise BackendError(f"openai: GET {url}/v1/models answered {resp.status}: {body[:300]!r}")
            models = json.loads(body).get("data") or []
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            raise BackendError(f"openai: could not list models at {url}/v1/models: {exc}") from exc
        finally:
            conn.close()
        if not models:
            raise BackendError(f"openai: {url}/v1/models lists no model; set engine_args.model")
        return str(models[0]["id"])

    def complete(self, req: Completion, t0: float) -> RequestResult:
        """Stream one completion; times are relative to `t0` (a `time.perf_counter()` value)."""
        body: dict[str, Any] = {"model": self.model, "prompt": req.prompt, "max_tokens": req.max_tokens,
                                "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}}
        if self.fixed_length:
            body.update(min_tokens=req.max_tokens, ignore_eos=True)
        body.update(self.extra_body)
        url = f"{self.base_url}/v1/completions"
        conn = self._connect()
        start = time.perf_counter()
        first: float | None = None
        chunks, usage, finish = 0, None, None
        try:
            conn.request("POST", f"{self._prefix}/v1/completions", body=json.dumps(body), headers=self._headers())
            resp = conn.getresponse()
            if resp.status != 200:
                raise BackendError(f"openai: POST {url} answered {resp.status}: {resp.read()[:500]!r}")
            for raw in resp:  # server-sent events, one `data: {...}` line per chunk
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if choice.get("text"):
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
                    finish = choice.get("finish_reason") or finish
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            raise BackendError(f"openai: POST {url} failed after {time.perf_counter() - start:.1f} s: "
                               f"{type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()
        end = time.perf_counter()
        if usage and usage.get("completion_tokens") is not None:
            n_out = int(usage["completion_tokens"])
        elif finish == "length":
            n_out = req.max_tokens
        else:
            n_out = chunks
        n_in = int(usage["prompt_tokens"]) if usage and usage.get("prompt_tokens") else req.input_tokens
        return RequestResult(input_tokens=n_in, output_tokens=n_out, start_s=start - t0,
                             ttft_s=(first or end) - start, e2e_s=end - start)

    def run(self, requests: Sequence[Completion], concurrency: int) -> list[RequestResult]:
        """All requests, `concurrency` in flight at a time, results in request order."""
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="wc-client") as pool:
            futures = [pool.submit(self.complete, r, t0) for r in requests]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


def hf_tokenizer(path: Path) -> Any:
    """A Hugging Face tokenizer from a local folder (transformers imported only here)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise BackendError(f"tokenizing for an OpenAI-compatible server needs transformers ({exc})") from exc
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not load a tokenizer from {path}: {exc}") from exc


def api_key_from_env(name: str) -> str:
    """The API key held by environment variable `name` ('' when no name is given)."""
    if not name:
        return ""
    key = os.environ.get(name)
    if not key:
        raise BackendError(f"openai: environment variable {name} (engine_args.api_key_env) is not set")
    return key


class OpenAICompatBackend(HFTokenizerMixin, InferenceBackend):
    """A client of a server someone else runs; the measured energy is this host's, so meter the server's."""

    framework = "openai"

    def __init__(self, spec: ExperimentSpec, model_path: Path) -> None:
        super().__init__(spec, model_path)
        args = spec.engine_kwargs
        self.base_url = str(args.get("base_url", ""))
        self.prompt_format = str(args.get("prompt_format", "ids"))
        if self.prompt_format not in ("ids", "text"):
            raise BackendError(f"openai: prompt_format must be 'ids' or 'text', got {self.prompt_format!r}")
        self.client: CompletionClient | None = None
        self.tokenizer: Any = None

    def load(self) -> None:
        args = self.spec.engine_kwargs
        if not self.base_url:
            raise BackendError("openai: engine_args.base_url is required (e.g. http://127.0.0.1:8000)")
        self.client = CompletionClient(self.base_url, str(args.get("model", "")),
                                       api_key_from_env(str(args.get("api_key_env", ""))),
                                       float(args.get("timeout_s", 300.0)), bool(args.get("fixed_length", True)))
        self.tokenizer = hf_tokenizer(Path(args.get("tokenizer") or self.model_path))

    def completions(self, prompts: list[Prompt]) -> list[Completion]:
        """Prompts as sent: token ids, or text decoded after the BOS the server adds again."""
        if self.prompt_format == "ids":
            return [Completion(list(p.token_ids), len(p.token_ids), p.max_new_tokens) for p in prompts]
        n_bos = len(self.bos_token_ids)
        return [Completion(self.tokenizer.decode(list(p.token_ids[n_bos:])), len(p.token_ids), p.max_new_tokens)
                for p in prompts]

    def generate(self, prompts: list[Prompt], batch_size: int) -> list[RequestResult]:
        if self.client is None:
            raise BackendError("openai: generate() before load()")
        return self.client.run(self.completions(prompts), batch_size)

    def info(self) -> dict[str, Any]:
        args = self.spec.engine_kwargs
        return {"framework_version": "", "device": "remote", "engine_args": {
            "base_url": self.base_url, "model": self.client.model if self.client else args.get("model", ""),
            "prompt_format": self.prompt_format, "timeout_s": float(args.get("timeout_s", 300.0)),
            "fixed_length": bool(args.get("fixed_length", True))}}
