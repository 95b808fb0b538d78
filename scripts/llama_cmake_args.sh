#!/usr/bin/env bash
# Print CMAKE_ARGS for building llama-cpp-python on this CPU.
# Why: a native build enables AMX when the CPU advertises it, and AMX faults ("ldtilecfg" general
# protection fault) in VMs that do not grant tile state, which is the case on our CI machines.
# So: no native build; turn on exactly the SIMD levels /proc/cpuinfo lists, never AMX.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
has() { [[ " $flags " == *" $1 "* ]]; }
has avx && args+=" -DGGML_AVX=ON"
has avx2 && args+=" -DGGML_AVX2=ON"
has fma && args+=" -DGGML_FMA=ON"
has f16c && args+=" -DGGML_F16C=ON"
has avx512f && args+=" -DGGML_AVX512=ON"
has avx512_vbmi && args+=" -DGGML_AVX512_VBMI=ON"
has avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
has avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
has avx_vnni && args+=" -DGGML_AVX_VNNI=ON"
echo "$args"
