"""Write models/configs/<name>/config.json: public architecture values of well-known open models.

Random weights of these architectures give representative speed and energy (never quality). Values
are copied from each model's published config.json on the Hugging Face Hub (model id in `source`).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "configs"

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "rms_norm_eps": 1e-5,
         "attention_bias": False, "mlp_bias": False, "bos_token_id": 128000, "eos_token_id": 128001}
QWEN2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "rms_norm_eps": 1e-6,
         "rope_theta": 1000000.0, "bos_token_id": 151643, "eos_token_id": 151643, "use_sliding_window": False}

ARCHS: dict[str, dict] = {
    "llama-3.1-8b": {**LLAMA, "source": "meta-llama/Llama-3.1-8B", "vocab_size": 128256, "hidden_size": 4096,
                     "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "rope_theta": 500000.0, "max_position_embeddings": 131072,
                     "tie_word_embeddings": False},
    "llama-3.1-70b": {**LLAMA, "source": "meta-llama/Llama-3.1-70B", "vocab_size": 128256, "hidden_size": 8192,
                      "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
                      "num_key_value_heads": 8, "rope_theta": 500000.0, "max_position_embeddings": 131072,
                      "tie_word_embeddings": False},
    "llama-3.2-1b": {**LLAMA, "source": "meta-llama/Llama-3.2-1B", "vocab_size": 128256, "hidden_size": 2048,
                     "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "head_dim": 64, "rope_theta": 500000.0,
                     "max_position_embeddings": 131072, "tie_word_embeddings": True},
    "llama-3.2-3b": {**LLAMA, "source": "meta-llama/Llama-3.2-3B", "vocab_size": 128256, "hidden_size": 3072,
                     "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
                     "num_key_value_heads": 8, "head_dim": 128, "rope_theta": 500000.0,
                     "max_position_embeddings": 131072, "tie_word_embeddings": True},
    "qwen2.5-0.5b": {**QWEN2, "source": "Qwen/Qwen2.5-0.5B", "vocab_size": 151936, "hidden_size": 896,
                     "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "max_position_embeddings": 32768, "tie_word_embeddings": True},
    "qwen2.5-1.5b": {**QWEN2, "source": "Qwen/Qwen2.5-1.5B", "vocab_size": 151936, "hidden_size": 1536,
                     "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                     "num_key_value_heads": 2, "max_position_embeddings": 131072, "tie_word_embeddings": True},
    "qwen2.5-7b": {**QWEN2, "source": "Qwen/Qwen2.5-7B", "vocab_size": 152064, "hidden_size": 3584,
                   "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                   "num_key_value_heads": 4, "max_position_embeddings": 131072, "tie_word_embeddings": False},
    "qwen2.5-14b": {**QWEN2, "source": "Qwen/Qwen2.5-14B", "vocab_size": 152064, "hidden_size": 5120,
                    "intermediate_size": 13824, "num_hidden_layers": 48, "num_attention_heads": 40,
                    "num_key_value_heads": 8, "max_position_embeddings": 131072, "tie_word_embeddings": False},
    "mistral-7b-v0.3": {"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                        "source": "mistralai/Mistral-7B-v0.3", "vocab_size": 32768, "hidden_size": 4096,
                        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 8, "hidden_act": "silu", "rms_norm_eps": 1e-5,
                        "rope_theta": 1000000.0, "max_position_embeddings": 32768, "sliding_window": None,
                        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2},
    "phi-3-mini": {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"],
                   "source": "microsoft/Phi-3-mini-4k-instruct", "vocab_size": 32064, "hidden_size": 3072,
                   "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                   "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
                   "sliding_window": 2047, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 32000,
                   "pad_token_id": 32000},
    "gemma-2-2b": {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "source": "google/gemma-2-2b",
                   "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
                   "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                   "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                   "max_position_embeddings": 8192, "sliding_window": 4096, "query_pre_attn_scalar": 256,
                   "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "tie_word_embeddings": True,
                   "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0},
    "mixtral-8x7b": {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"],
                     "source": "mistralai/Mixtral-8x7B-v0.1", "vocab_size": 32000, "hidden_size": 4096,
                     "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
                     "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
                     "max_position_embeddings": 32768, "sliding_window": None, "tie_word_embeddings": False,
                     "bos_token_id": 1, "eos_token_id": 2},
}


def main() -> None:
    for name, values in ARCHS.items():
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in values.items() if k != "source"}
        config["_source_model"] = values["source"]
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
