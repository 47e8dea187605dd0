"""Low-level ops. One public function per op; each picks a backend (reference | cpu | cuda | triton).

The pure-torch reference of each op is its definition; every other backend is tested against it.
"""

from __future__ import annotations

from fastpanc.ops._backend import BackendUnavailableError, slow_paths_taken
from fastpanc.ops.normalize import ct_normalize, ct_normalize_reference

__all__ = [
    "BackendUnavailableError",
    "slow_paths_taken",
    "ct_normalize",
    "ct_normalize_reference",
]
