"""JSON text byte-identical to JavaScript's ``JSON.stringify`` for the values webhooks carry.

Receivers using Nango's node SDK verify a signature by re-serialising the parsed body with
``JSON.stringify``; Python's default ``json.dumps`` differs (spaces after separators, ``\\uXXXX``
escapes of non-ASCII, ``1.0`` and ``1e-07`` for floats), so the signature would not match.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["js_number", "js_stringify"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def js_number(value: float) -> str:
    """ECMAScript ``Number::toString``: ``1`` not ``1.0``, ``1e-7`` not ``1e-07``, exponents only past 1e21."""
    if not math.isfinite(value):
        return "null"  # JSON.stringify(NaN) is "null"
    if value == 0:
        return "0"  # -0 too
    # repr is the shortest string that reads back as the same double, as JavaScript's digits are.
    _sign, digit_tuple, raw_exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent = int(raw_exponent) + len(digits) - len(stripped)  # a finite value's exponent is an int
    digits = stripped
    k = len(digits)
    n = k + exponent  # the decimal point sits after n digits
    prefix = "-" if value < 0 else ""
    if k <= n <= 21:
        return prefix + digits + "0" * (n - k)
    if 0 < n <= 21:
        return prefix + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return prefix + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{prefix}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _js_string(text: str) -> str:
    # JSON.stringify escapes a lone surrogate (\\udxxx); json.dumps would emit it raw, as invalid UTF-8.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def _is_array_index(key: str) -> bool:
    return key.isdigit() and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_js_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(js_number(value))
    elif isinstance(value, Mapping):
        items = {str(k): v for k, v in value.items()}
        # JS objects list integer-like keys first, in ascending order, then the rest in insertion order.
        indexes = sorted((k for k in items if _is_array_index(k)), key=int)
        keys = [*indexes, *(k for k in items if not _is_array_index(k))] if indexes else list(items)
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _write(items[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable the way JavaScript does it")


def js_stringify(value: Any) -> str:
    out: list[str] = []
    _write(value, out)
    return "".join(out)
