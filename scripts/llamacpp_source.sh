#!/usr/bin/env bash
# Pack what a GPU host without internet needs to build and drive llama.cpp (run here, where pip works):
#   .llama-src/llama.cpp-0.3.36-src.tar.xz  vendor/llama.cpp of the llama-cpp-python sdist, without models/,
#                                           docs/, tests/, examples/ and the non-CUDA GPU backends (~6.8 MB)
#   .llama/py/                              llama_cpp (the ctypes bindings), gguf (its gguf-py), diskcache
# Both folders are git-ignored (.gitignore); name them in the device call's `carry` (.llama-src only to build).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$tmp"
python3 -m pip download -q --no-deps diskcache==5.6.3 -d "$tmp"
tar xzf "$tmp/llama_cpp_python-$version.tar.gz" -C "$tmp"
sdist=$tmp/llama_cpp_python-$version
mkdir -p .llama-src .llama/py
excludes=(--exclude=./models --exclude=./docs --exclude=./tests --exclude=./examples --exclude=./media --exclude=./.git)
for b in cann hexagon metal opencl openvino sycl virtgpu vulkan webgpu zdnn zendnn et musa hip; do
  excludes+=("--exclude=./ggml/src/ggml-$b")
done
tar cJf ".llama-src/llama.cpp-$version-src.tar.xz" -C "$sdist/vendor/llama.cpp" "${excludes[@]}" .
rm -rf .llama/py/llama_cpp .llama/py/gguf
cp -r "$sdist/llama_cpp" "$sdist/vendor/llama.cpp/gguf-py/gguf" .llama/py/
rm -rf .llama/py/llama_cpp/lib
python3 -m zipfile -e "$tmp"/diskcache-*.whl .llama/py/

du -sh .llama-src .llama
