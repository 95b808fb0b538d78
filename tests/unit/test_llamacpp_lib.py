"""The C++ runtime made global before llama-cpp-python loads (see backends/llamacpp_lib.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("llama_cpp")

PROBE = """
import ctypes
from wattcounts_pipeline.backends.llamacpp_lib import LIBSTDCXX, load_llama_cpp
symbol = "_ZNSt6locale7classicEv"  # std::locale::classic(), defined only by the C++ runtime
llama_cpp = load_llama_cpp()
process = ctypes.CDLL(None)  # the global scope, where a library without its own runtime looks first
runtime = ctypes.CDLL(LIBSTDCXX)
assert ctypes.cast(getattr(process, symbol), ctypes.c_void_p).value == ctypes.cast(getattr(runtime, symbol), ctypes.c_void_p).value
print(llama_cpp.__version__)
"""


def test_load_llama_cpp_puts_the_system_cxx_runtime_first_in_symbol_lookup() -> None:
    # A fresh interpreter: the test process may already have made the runtime global by another import.
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_without_it_the_runtime_is_not_global() -> None:
    # The control: a plain interpreter does not resolve the symbol globally, so the test above can fail.
    probe = "import ctypes; print(hasattr(ctypes.CDLL(None), '_ZNSt6locale7classicEv'))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "False"
