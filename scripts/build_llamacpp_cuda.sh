#!/usr/bin/env bash
# Build llama.cpp with CUDA on a GPU host, from the source vendored in llama-cpp-python (pinned below), so the
# sweep's `llamacpp` (in-process, through llama-cpp-python's ctypes bindings) and `llamacpp-server`
# (`server: llama-server`) frameworks run on the GPU.
#   scripts/build_llamacpp_cuda.sh SRC.tar.xz PREFIX     # ~5 min with 16 cores (nvcc for sm_90)
# SRC.tar.xz: vendor/llama.cpp of the llama-cpp-python sdist, as `scripts/llamacpp_source.sh` packs it.
# PREFIX/bin gets the shared libraries and llama-server; PREFIX/build-info.json what the rows record.
set -euo pipefail
src_tar=$1 prefix=$2
arch=${CUDA_ARCHITECTURES:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
flags=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$arch" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
       -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_TYPE=Release)
work=$(mktemp -d)
tar xJf "$src_tar" -C "$work"
t0=$SECONDS
cmake -S "$work" -B "$work/build" -G Ninja "${flags[@]}" > "$work/configure.log"
cmake --build "$work/build" --target llama-server -j "$(nproc)" > "$work/build.log"
mkdir -p "$prefix/bin"
cp -a "$work"/build/bin/*.so* "$work/build/bin/llama-server" "$prefix/bin/"
strip --strip-unneeded "$prefix"/bin/* 2>/dev/null || true
python3 - "$prefix/build-info.json" "$work" "$((SECONDS - t0))" "${flags[*]}" <<'PY'
import json, re, subprocess, sys
out, src, seconds, flags = sys.argv[1:]
text = open(f"{src}/build/common/build-info.cpp").read() if __import__("os").path.exists(f"{src}/build/common/build-info.cpp") else ""
find = lambda key: (re.search(key + r'\s*=\s*"?([^";]*)"?;', text) or [None, ""])[1]
nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1:]
json.dump({"source": "llama-cpp-python 0.3.36 vendor/llama.cpp", "build_number": find("LLAMA_BUILD_NUMBER"),
           "commit": find("LLAMA_COMMIT"), "compiler": find("LLAMA_COMPILER"), "cmake_flags": flags,
           "nvcc": nvcc[0] if nvcc else "", "build_s": int(seconds)}, open(out, "w"), indent=1)
PY
rm -rf "$work"
cat "$prefix/build-info.json"
