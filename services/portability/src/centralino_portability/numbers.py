"""Numbers to port: E.164 normalisation, what kind of number, which district."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

_GEOGRAPHIC = {PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


class NumberProblem(ValueError):
    """A number that cannot be ported, with the reason."""


@dataclass(frozen=True)
class ItalianNumber:
    e164: str
    national: str  # national significant number, leading 0 kept ("0612345678")
    area_code: str | None  # the district ("06"), None for non-geographic numbers


def parse(raw: str) -> ItalianNumber:
    """An Italian fixed number in E.164, or NumberProblem saying why not."""
    try:
        number = phonenumbers.parse(raw, "IT")
    except phonenumbers.NumberParseException as exc:
        raise NumberProblem(f"{raw!r} is not a telephone number") from exc
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if number.country_code != 39:
        raise NumberProblem(f"{e164} is not an Italian number")
    if not phonenumbers.is_valid_number(number):
        raise NumberProblem(f"{e164} is incomplete or not a number of the Italian plan")
    kind = phonenumbers.number_type(number)
    national = phonenumbers.national_significant_number(number)
    if kind in _GEOGRAPHIC:
        length = phonenumbers.length_of_geographical_area_code(number)
        return ItalianNumber(e164, national, national[:length] if length else None)
    if kind == PhoneNumberType.VOIP:
        return ItalianNumber(e164, national, None)
    if kind == PhoneNumberType.MOBILE:
        raise NumberProblem(
            f"{e164} is a mobile number: it ports through mobile number portability"
        )
    raise NumberProblem(f"{e164} is not a geographic or VoIP number and cannot be ported here")


def parse_root(raw: str) -> str:
    """The E.164 root of a GNR range (a short number on its own, so not checked as one)."""
    digits = "".join(c for c in raw if c.isdigit() or c == "+")
    if digits.startswith("+39"):
        national = digits[3:]
    elif digits.startswith("0039"):
        national = digits[4:]
    elif digits.startswith("0"):
        national = digits
    else:
        raise NumberProblem(f"{raw!r} is not the root of an Italian geographic range")
    if not national.startswith("0") or not 3 <= len(national) <= 10:
        raise NumberProblem(f"{raw!r} is not the root of an Italian geographic range")
    return f"+39{national}"
