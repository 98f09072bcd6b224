"""JSON Canonicalization Scheme (JCS, RFC 8785): the exact bytes of a logbook entry.

One value, one byte string, on any machine and in any language that implements RFC 8785: UTF-8,
no insignificant whitespace, object members sorted by the UTF-16 code units of their names
(§3.2.3), numbers written as ECMAScript's ``Number.prototype.toString`` writes them (§3.2.2.3),
strings with only the escapes JSON requires (§3.2.2.2).

This module imports the standard library only: it is shipped inside evidence bundles so that an
auditor can recompute an entry's bytes (and so its leaf hash) with ``python3`` alone.

Accepted values: None, bool, int, float, str, list/tuple, dict with str keys. RFC 8785 numbers
are IEEE 754 doubles: integers beyond 2**53 are accepted only when their decimal form is the
canonical form of a double (what a JSON parser gives back for a large float), others belong in
strings (RFC 8785 §6, I-JSON). NaN and the infinities are not JSON.
"""

from __future__ import annotations

import math
from json.encoder import encode_basestring
from typing import Any

__all__ = ["canonical_json", "es6_number"]

#: Largest magnitude below which every integer is an IEEE 754 double.
_MAX_EXACT_INT = 2**53


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical form of ``value``, UTF-8 encoded.

    Raises ValueError on NaN/Infinity, non-str object keys, integers beyond 2**53, strings
    with lone surrogates, and types JSON has no form for.
    """
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"string is not valid Unicode (lone surrogate): {exc}") from None


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(encode_basestring(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(es6_number(value))
    elif isinstance(value, dict):
        items = []
        for key, member in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r} is not a string")
            items.append((_utf16_key(key), key, member))
        items.sort(key=lambda item: item[0])
        out.append("{")
        for i, (_, key, member) in enumerate(items):
            if i:
                out.append(",")
            out.append(encode_basestring(key))
            out.append(":")
            _write(member, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ValueError(f"{type(value).__name__} has no JSON form")


def _integer(value: int) -> str:
    """An integer is a JSON number, that is a double (RFC 8785 §3.2.2.3): written in decimal
    when that is also the canonical form of the double it reads as. Every integer up to 2**53
    qualifies, and larger ones that are the canonical digits of a double (e.g. 10**21 - 10**5,
    as a parser gives back 999999999999999900000); others would change on the way to a double
    and back, and are refused."""
    text = str(int(value))
    if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT:
        return text
    try:
        as_double = es6_number(float(value))
    except OverflowError:
        as_double = ""
    if as_double != text:
        raise ValueError(f"integer {value} is not exactly a JSON number (double); use a string")
    return text


def _utf16_key(key: str) -> bytes:
    """Sort key: UTF-16BE bytes compare as the UTF-16 code units do (§3.2.3)."""
    try:
        return key.encode("utf-16-be")
    except UnicodeEncodeError:
        raise ValueError(f"object key {key!r} is not valid Unicode (lone surrogate)") from None


def es6_number(value: float) -> str:
    """``Number.prototype.toString`` of ECMAScript (ES2015 §7.1.12.1), as RFC 8785 §3.2.2.3
    requires.

    Python's ``repr`` gives the same digits as ECMAScript: the shortest decimal that reads
    back as the same double, the closest one when several are as short. Only the layout
    differs: where the decimal point goes, when to use an exponent, how it is written.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a JSON number")
    if value == 0:
        return "0"  # including -0
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value = 0.<digits> * 10**point, then strip zeros on both sides of the digits.
    point = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exp = f"e{'+' if e > 0 else '-'}{abs(e)}"
    if k == 1:
        return sign + digits + exp
    return sign + digits[0] + "." + digits[1:] + exp
