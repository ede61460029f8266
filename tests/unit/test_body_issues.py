"""``http/body_issues.py``: zod 4's issues for a JSON body, named and ordered as zod reports them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from auth_gateway.http.body_issues import (
    MISSING,
    check_boolean,
    check_string,
    check_string_record,
    ends_with,
    matches,
    max_length,
    min_length,
    starts_with,
    unknown_fields,
)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (MISSING, "undefined"),
        (None, "null"),
        (True, "boolean"),
        (1, "number"),
        (1.5, "number"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_as_zod_names_it(value: Any, name: str) -> None:
    assert check_string(value, ["a"]) == [
        {"code": "invalid_type", "message": f"Invalid input: expected string, received {name}", "path": ["a"]}
    ]


def test_every_failing_check_is_reported_in_its_order() -> None:
    issues = check_string("a b" + "x" * 10, ["k"], matches(re.compile(r"[a-z]+")), max_length(5))
    assert [(i["code"], i["message"]) for i in issues] == [
        ("invalid_format", "Invalid string: must match pattern /^[a-z]+$/"),
        ("too_big", "Too big: expected string to have <=5 characters"),
    ]
    assert check_string("", ["k"], min_length(1))[0]["message"] == "Too small: expected string to have >=1 characters"
    pem = check_string("x", ["key"], starts_with("-----BEGIN"), ends_with("-----END-----"))
    assert [i["message"] for i in pem] == [
        'Invalid string: must start with "-----BEGIN"',
        'Invalid string: must end with "-----END-----"',
    ]
    assert check_string("abc", ["k"], matches(re.compile(r"[a-z]+")), max_length(5)) == []


def test_optional_fields_may_be_missing_but_not_null() -> None:
    assert check_string(MISSING, ["a"], optional=True) == []
    assert check_boolean(MISSING, ["b"], optional=True) == []
    assert check_boolean(None, ["b"], optional=True)[0]["message"] == "Invalid input: expected boolean, received null"
    assert check_boolean(False, ["b"]) == []
    assert check_string_record(MISSING, ["c"], optional=True) == []


def test_a_record_names_each_bad_value_by_its_key() -> None:
    assert check_string_record({"a": "x", "b": 2, "c": "long"}, ["custom"], max_length(3)) == [
        {"code": "invalid_type", "message": "Invalid input: expected string, received number", "path": ["custom", "b"]},
        {"code": "too_big", "message": "Too big: expected string to have <=3 characters", "path": ["custom", "c"]},
    ]
    assert check_string_record([], ["custom"])[0]["message"] == "Invalid input: expected record, received array"


def test_unknown_fields_are_one_issue_at_the_objects_path() -> None:
    assert unknown_fields({"a": 1, "b": 2}, ("a",), ["credentials"]) == [
        {"code": "unrecognized_keys", "message": 'Unrecognized key: "b"', "path": ["credentials"]}
    ]
    assert unknown_fields({"x": 1, "y": 2}, ())[0]["message"] == 'Unrecognized keys: "x", "y"'
    assert unknown_fields({"a": 1}, ("a",)) == []
