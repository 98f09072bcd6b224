"""core.logbook.canonical: RFC 8785 (JCS) — the published examples of §3.2.2-3.2.4 and
Appendix B, ECMAScript Number::toString samples, string escaping, key order by UTF-16 code
units, and what must be refused."""

from __future__ import annotations

import json
import math
import random
import re
import struct
from decimal import Decimal
from typing import Any

import pytest

from archive_service.core.logbook.canonical import canonical_json, es6_number


def from_bits(hex64: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(hex64))[0]
    return value


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical form.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]

# ECMAScript Number::toString of further doubles (the layout rules: plain digits up to 1e21,
# "0.000…" down to 1e-6, an exponent with an explicit sign beyond).
ES6_SAMPLES = [
    ("3ff0000000000000", "1"),
    ("bff0000000000000", "-1"),
    ("3fb999999999999a", "0.1"),
    ("3fd3333333333334", "0.30000000000000004"),
    ("405edd2f1a9fbe77", "123.456"),
    ("4011666666666666", "4.35"),
    ("3fd5555555555555", "0.3333333333333333"),
    ("4415af1d78b58c40", "100000000000000000000"),
    ("441ac53a7e04bcda", "123456789012345680000"),
    ("54b249ad2594c37d", "1e+100"),
    ("3eb4b3fd5942cd96", "0.000001234"),
    ("3ee92a737110e454", "0.000012"),
    ("3e7ad7f29abcaf48", "1e-7"),
    ("be7ad7f29abcaf48", "-1e-7"),
    ("3e8421f5f40d8376", "1.5e-7"),
    ("3ea0c6f7a0b5ed8d", "5e-7"),
    ("3c36b082c2148b8e", "1.23e-18"),
    ("0000000000000002", "1e-323"),
    ("000fffffffffffff", "2.225073858507201e-308"),
    ("0010000000000000", "2.2250738585072014e-308"),
    ("7fe0000000000000", "8.98846567431158e+307"),
    ("433fffffffffffff", "9007199254740991"),
    ("4340000000000001", "9007199254740994"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B + ES6_SAMPLES)
def test_number_serialisation_samples(bits: str, expected: str) -> None:
    value = from_bits(bits)
    assert es6_number(value) == expected
    assert canonical_json(value) == expected.encode()
    assert canonical_json([value]) == f"[{expected}]".encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (-0.0, "0"),
        (0.000001, "0.000001"),
        (123456789012345680000.0, "123456789012345680000"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (1e30, "1e+30"),
        (1e-27, "1e-27"),
        (100.0, "100"),
        (-2.5e-8, "-2.5e-8"),
        (1.7e22, "1.7e+22"),
    ],
)
def test_number_serialisation_of_literals(value: float, expected: str) -> None:
    assert es6_number(value) == expected


def test_rfc8785_section_3_2_2_sample() -> None:
    # The input of §3.2.2, as JSON text, parsed the way any JSON reader would.
    source = (
        "{\n"
        '  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
        '  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        '  "literals": [null, true, false]\n'
        "}"
    )
    expected = (
        '{"literals":[null,true,false],'
        '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    canonical = canonical_json(json.loads(source))
    assert canonical == expected.encode("utf-8")
    # §3.2.4: the euro sign is its three UTF-8 bytes, not an escape.
    assert b'"string":"\xe2\x82\xac$' in canonical


def test_rfc8785_section_3_2_3_sorting_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    canonical = canonical_json(value)
    assert canonical == expected.encode("utf-8")
    # Code-point order would put U+FB33 before U+1F600: UTF-16 puts the surrogate 0xD83D first.
    assert list(json.loads(canonical)) != sorted(value)


def test_sorting_ignores_locale_and_recurses() -> None:
    value = {"sin": 4, "pêche": 3, "péché": 2, "peach": 1, "n": {"b": [{"z": 1, "a": 2}], "a": 0}}
    assert canonical_json(value) == (
        '{"n":{"a":0,"b":[{"a":2,"z":1}]},"peach":1,"péché":2,"pêche":3,"sin":4}'.encode()
    )


def test_string_escaping() -> None:
    short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    for code in range(0x20):
        char = chr(code)
        escaped = short.get(char, f"\\u{code:04x}")
        assert canonical_json(char) == f'"{escaped}"'.encode()
    assert canonical_json('"') == b'"\\""'
    assert canonical_json("\\") == b'"\\\\"'
    # Everything else is written as itself, in UTF-8: no escaped solidus, DEL, U+2028, astral.
    for char in ["/", "\x7f", "\u2028", "\u00e9", "\U0001f600", "'", "<", "&"]:
        assert canonical_json(char) == f'"{char}"'.encode()
    assert canonical_json("a\x00b\x1fc") == b'"a\\u0000b\\u001fc"'


def test_literals_integers_and_containers() -> None:
    assert canonical_json(None) == b"null"
    assert canonical_json(True) == b"true"
    assert canonical_json(False) == b"false"
    assert canonical_json([True, 1, 1.0, 0, -0.0]) == b"[true,1,1,0,0]"
    assert canonical_json(2**53) == b"9007199254740992"
    assert canonical_json(-(2**53)) == b"-9007199254740992"
    assert canonical_json(999999999999999900000) == b"999999999999999900000"
    assert canonical_json(-float(2**60)) == b"-1152921504606847000"
    assert canonical_json(-1152921504606847000) == b"-1152921504606847000"
    assert canonical_json((1, "a")) == b'[1,"a"]'
    assert canonical_json({}) == b"{}"
    assert canonical_json([]) == b"[]"
    assert canonical_json({"a": [], "b": {}}) == b'{"a":[],"b":{}}'


def test_logbook_entry_bytes_do_not_depend_on_insertion_order() -> None:
    entry: dict[str, Any] = {
        "v": 1,
        "tenant": "tn-01",
        "id": 42,
        "at": "2025-01-02T03:04:05.000006Z",
        "type": "transfer.accepted",
        "outcome": "ok",
        "actor": None,
        "subject": {"type": "package", "id": "pk-1"},
        "details": {"offers": ["local", "s3"], "size": 1234},
    }
    reversed_entry = dict(reversed(list(entry.items())))
    assert canonical_json(entry) == canonical_json(reversed_entry)
    assert canonical_json(entry) == (
        b'{"actor":null,"at":"2025-01-02T03:04:05.000006Z","details":{"offers":["local","s3"],'
        b'"size":1234},"id":42,"outcome":"ok","subject":{"id":"pk-1","type":"package"},'
        b'"tenant":"tn-01","type":"transfer.accepted","v":1}'
    )


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        [1, math.nan],
        {"a": {"b": math.inf}},
        {1: "a"},
        {None: "a"},
        {True: "a"},
        {("a",): 1},
        {"ok": {2: "nested"}},
        {1, 2},
        b"bytes",
        Decimal("1.5"),
        object(),
        2**53 + 1,
        -(2**53) - 1,
        10**30,
        10**21,
        2**60,  # exact, but written as a double it would read back as 1152921504606847000
        999999999999999900001,
        10**400,
        "\ud800",
        {"\udc00": 1},
        ["ok", "x\udfffy"],
    ],
    ids=repr,
)
def test_refused_values(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?(e[+-][1-9][0-9]*)?")


def test_random_doubles_round_trip_and_are_json_numbers() -> None:
    rng = random.Random(8785)
    for _ in range(20_000):
        value = from_bits(rng.randbytes(8).hex())
        if not math.isfinite(value):
            with pytest.raises(ValueError):
                es6_number(value)
            continue
        text = es6_number(value)
        assert _JSON_NUMBER.fullmatch(text), text
        assert float(text) == value or (value == 0 and text == "0")
        assert json.loads(text, parse_int=float) == value
        # A large double is written as an integer; read back as one, it stays the same.
        if "." not in text and "e" not in text:
            assert canonical_json(int(text)) == text.encode()


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**53), 2**53)
    if kind == 2:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    if kind in (3, 4):
        alphabet = 'aZ09 "\\/\n\t\x00\x1f\x7fé€\U0001f600\ufb33'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [_random_value(rng, 99) for _ in range(rng.randrange(5))]
    return {k if isinstance(k, str) else str(k): _random_value(rng, depth + 1) for k in keys}


def test_canonical_form_is_json_and_a_fixed_point() -> None:
    rng = random.Random(1)
    for _ in range(2_000):
        value = _random_value(rng)
        canonical = canonical_json(value)
        parsed = json.loads(canonical)
        assert canonical_json(parsed) == canonical
        assert b"\n" not in canonical  # no insignificant whitespace, newlines escaped
