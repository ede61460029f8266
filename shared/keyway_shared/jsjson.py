"""JSON text byte-identical to JavaScript's ``JSON.stringify`` for the values webhooks carry.

Receivers using Nango's node SDK verify a signature by re-serialising the parsed body with
``JSON.stringify``; Python's default ``json.dumps`` differs (spaces after separators, ``\\uXXXX``
escapes of non-ASCII, ``1.0`` for floats), so the signature would not match.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["js_stringify"]


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON.stringify(NaN) is "null"
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, Mapping):
        keys = [str(k) for k in value]
        if any(_is_array_index(k) for k in keys):
            # JS objects list integer-like keys first, in ascending order, then the rest in insertion order.
            ints = sorted((k for k in keys if _is_array_index(k)), key=int)
            rest = [k for k in keys if not _is_array_index(k)]
            as_str = {str(k): v for k, v in value.items()}
            return {k: _normalise(as_str[k]) for k in [*ints, *rest]}
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable the way JavaScript does it")


def _is_array_index(key: str) -> bool:
    return key.isdigit() and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1


def js_stringify(value: Any) -> str:
    # ensure_ascii=False keeps non-ASCII as is; JSON.stringify only escapes lone surrogates, and
    # json.dumps escapes U+2028/2029 nowhere either, so the two agree on everything else.
    return json.dumps(_normalise(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
