"""The one way this package imports llama-cpp-python, so every llama.cpp build it loads behaves the same.

Some builds carry the C++ runtime inside their shared libraries instead of linking libstdc++.so.6 (the CUDA
build on the lent H200 hosts does: none of its libraries lists libstdc++ as NEEDED). `llama-server` works
with such a build because its own copy of the runtime comes first in symbol lookup; in a Python process
each library's references then resolve to a mix of partial copies, and the first `std::ostream << long`
in `llama_model::print_info` dereferences a facet of the other copy (SIGSEGV at address 0x20). Making the
system libstdc++ global before the bindings load gives every library one runtime again; where the build
links libstdc++ normally, this is the library it loads anyway.
"""

from __future__ import annotations

import ctypes
import os
from types import ModuleType

LIBSTDCXX = "libstdc++.so.6"


def share_cxx_runtime() -> bool:
    """Load the system libstdc++ into the global symbol scope; False where there is none (macOS, musl)."""
    try:
        ctypes.CDLL(LIBSTDCXX, mode=os.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def load_llama_cpp() -> ModuleType:
    """`import llama_cpp`, after `share_cxx_runtime()`."""
    share_cxx_runtime()
    import llama_cpp

    return llama_cpp
