"""The rules on their own: check character, migration codes, calendar, identity, numbers."""

from datetime import date

import pytest
from stdnum.it import codicefiscale

from centralino_portability import calendar, migration_code
from centralino_portability.config import DEFAULT_COS_VALUES
from centralino_portability.identity import tax_code_problem, vat_number_problem
from centralino_portability.numbers import NumberProblem, parse, parse_root


def validate(code: str, strict: bool = False) -> migration_code.Validation:
    return migration_code.validate(code, cos_values=DEFAULT_COS_VALUES, strict_check=strict)


def test_check_character_of_the_issue_example() -> None:
    assert migration_code.check_character("XYZ0212345678001") == "N"


@pytest.mark.parametrize(
    "cf", ["RSSMRA85T10A562S", "MRTMTT91D08F205J", "BNCGVN70A01H501W", "VRDLGU80E41L219X"]
)
def test_check_character_is_the_codice_fiscale_one(cf: str) -> None:
    # The same algorithm as the tax code's 16th character (cross-checked with python-stdnum).
    assert migration_code.check_character(cf[:15]) == codicefiscale.calc_check_digit(cf[:15])


def test_well_formed_code_splits_into_its_parts() -> None:
    result = validate("xyz 0212345678 001 n")
    assert result.valid and not result.warnings
    assert result.code == "XYZ0212345678001N"
    assert result.parts == {
        "cow": "XYZ",
        "cor": "0212345678",
        "cos": "001",
        "check_character": "N",
        "expected_check_character": "N",
    }


def test_wrong_check_character_is_a_warning_by_default_and_an_error_when_strict() -> None:
    lenient = validate("XYZ0212345678001A")
    assert lenient.valid
    assert lenient.warnings == ["the check character is A, computed N"]
    strict = validate("XYZ0212345678001A", strict=True)
    assert not strict.valid
    assert strict.errors == ["the check character is A, computed N"]


def test_code_without_cos_is_valid_with_a_warning() -> None:
    body = "TLC0612345678"
    result = validate(body + migration_code.check_character(body))
    assert result.valid
    assert result.parts["cos"] is None and result.parts["cor"] == "0612345678"
    assert any("COS" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("", "empty"),
        ("XYZ02123!5678001N", "only letters and digits"),
        ("XYZ0212345678001", "check character is missing (expected N)"),
        ("XYZ0212345678901234N", "at most 18"),
        ("XYZ0212345678901999N", "COR) has 13 characters"),
        ("XYZ0212345678901234998N", "unknown service code (COS) 998"),
        ("XY", "too short"),
    ],
)
def test_malformed_codes_are_errors(code: str, error: str) -> None:
    result = validate(code)
    assert not result.valid
    assert any(error in e for e in result.errors), result.errors


def test_cos_values_are_configuration() -> None:
    body = "XYZ021234567042"
    code = body + migration_code.check_character(body)
    assert validate(code).parts["cos"] is None
    custom = migration_code.validate(code, cos_values={"042"})
    assert custom.parts["cos"] == "042" and custom.parts["cor"] == "021234567"


# -- business calendar ------------------------------------------------------------


def test_easter_monday_is_skipped() -> None:
    # Thursday 2 April 2026; Easter Monday is 6 April.
    assert calendar.add_business_days(date(2026, 4, 2), 1) == date(2026, 4, 3)
    assert calendar.add_business_days(date(2026, 4, 3), 1) == date(2026, 4, 7)
    assert calendar.add_business_days(date(2026, 4, 2), 10) == date(2026, 4, 17)


def test_liberation_day_and_labour_day_are_skipped() -> None:
    # 25 April 2025 is a Friday; 1 May 2026 is a Friday.
    assert calendar.add_business_days(date(2025, 4, 24), 1) == date(2025, 4, 28)
    assert calendar.add_business_days(date(2026, 4, 30), 1) == date(2026, 5, 4)
    # 24 April 2025 + 5: 25 Apr off, 28, 29, 30 Apr, 1 May off, 2, 5 May.
    assert calendar.add_business_days(date(2025, 4, 24), 5) == date(2025, 5, 5)


def test_saint_francis_is_a_holiday_from_2026_only() -> None:
    assert calendar.holiday_name(date(2026, 10, 4)) is not None
    assert calendar.holiday_name(date(2025, 10, 4)) is None
    # 4 October 2024 was a Friday and a working day; 4 October 2027 is a Monday off.
    assert calendar.add_business_days(date(2024, 10, 3), 1) == date(2024, 10, 4)
    assert calendar.add_business_days(date(2027, 10, 1), 1) == date(2027, 10, 5)
    assert not calendar.is_business_day(date(2027, 10, 4))


def test_weekends_and_zero_days() -> None:
    assert calendar.add_business_days(date(2026, 9, 25), 1) == date(2026, 9, 28)
    assert calendar.add_business_days(date(2026, 9, 26), 0) == date(2026, 9, 26)
    with pytest.raises(ValueError):
        calendar.add_business_days(date(2026, 9, 26), -1)


# -- identity and numbers -------------------------------------------------------------


def test_tax_code_checksum() -> None:
    assert tax_code_problem("rssmra85t10a562s") == ("RSSMRA85T10A562S", None)
    _, problem = tax_code_problem("RSSMRA85T10A562T")
    assert problem is not None and "checksum" in problem
    # A company's codice fiscale is its 11-digit number.
    assert tax_code_problem("07643520567")[1] is None


def test_vat_number_checksum() -> None:
    assert vat_number_problem("IT 07643520567") == ("07643520567", None)
    _, problem = vat_number_problem("07643520568")
    assert problem is not None and "checksum" in problem
    assert vat_number_problem("0764352056")[1] is not None


def test_numbers_normalise_to_e164_with_their_district() -> None:
    rome = parse("06 1234 5678")
    assert (rome.e164, rome.national, rome.area_code) == ("+390612345678", "0612345678", "06")
    assert parse("+390331123456").area_code == "0331"
    with pytest.raises(NumberProblem, match="mobile"):
        parse("+393351234567")
    with pytest.raises(NumberProblem, match="incomplete"):
        parse("0612")
    assert parse_root("06 123450") == "+3906123450"
