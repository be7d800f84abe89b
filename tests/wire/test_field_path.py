"""Validation locations answered or logged without the caller's personal data."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from govedge_wire.pii import field_path, make_id_number

ID_NUMBER = make_id_number("330106", "19900101", 123)


@pytest.mark.parametrize(
    ("loc", "shown"),
    [
        (("body", "applicant", "id_number"), ["body", "applicant", "id_number"]),
        (("body", "materials", 3, "ref"), ["body", "materials", "3", "ref"]),
        (("header", "Idempotency-Key"), ["header", "Idempotency-Key"]),
        (("body", "nmae"), ["body", "nmae"]),  # a typo is still named
        (("body", "applicant", ID_NUMBER), ["body", "applicant", "*"]),
        (("body", "张三"), ["body", "*"]),
        (("body", "13800138000"), ["body", "*"]),
        (("body", "id330106199001011234"), ["body", "*"]),  # six digits in a row
        (("body", "a b"), ["body", "*"]),
        (("body", "x" * 65), ["body", "*"]),
        (("body", ID_NUMBER, "[key]"), ["body", "*", "[key]"]),
        (("body", True), ["body", "*"]),
    ],
)
def test_keys_not_shaped_like_field_names_are_masked(
    loc: tuple[object, ...], shown: list[str]
) -> None:
    assert field_path(loc) == shown


class _Applicant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def test_pydantic_names_an_unknown_key_and_the_path_masks_it() -> None:
    with pytest.raises(ValidationError) as caught:
        _Applicant.model_validate({"name": "x", ID_NUMBER: 1})
    (error,) = caught.value.errors()
    assert error["loc"] == (ID_NUMBER,)  # what pydantic would have answered
    assert field_path(error["loc"]) == ["*"]
