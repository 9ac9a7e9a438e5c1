"""The Italian numbering plan: dial strings to E.164 and a call class.

Pure functions, no I/O: the decision calls them for every call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from centralino_proto.events import CallClass

COUNTRY_CODE = "39"
EMERGENCY = frozenset({"112", "113", "115", "118"})

# (prefix of the national significant number, class, min length, max length),
# longest prefix first. Lengths count the whole national number (0612345678 = 10).
_NATIONAL_PLAN: tuple[tuple[str, CallClass, int, int], ...] = (
    ("0878", CallClass.premium, 6, 11),
    ("800", CallClass.toll_free, 6, 10),
    ("803", CallClass.toll_free, 6, 10),
    ("144", CallClass.premium, 6, 10),
    ("166", CallClass.premium, 6, 10),
    ("84", CallClass.shared_cost, 6, 10),
    ("89", CallClass.premium, 6, 10),
    ("0", CallClass.national_fixed, 6, 11),
    ("3", CallClass.mobile, 9, 10),
)
# E.164 allows 15 digits after the +; fewer than 7 is not a reachable number.
_INTL_MIN, _INTL_MAX = 7, 15
_SEPARATORS = re.compile(r"[\s\-./()]")
_DIALABLE = re.compile(r"\+?[0-9]+")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class NumberingError(Exception):
    """A dial string that cannot be routed, with the SIP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Classified:
    e164: str
    call_class: CallClass


def clean(dial: str) -> str:
    """Drops the visual separators people type (spaces, dashes, dots, brackets)."""
    return _SEPARATORS.sub("", dial)


def classify(dial: str) -> Classified:
    """Normalises an Italian dial string (or +E.164) and says what kind of call it is."""
    digits = clean(dial)
    if not digits:
        raise NumberingError(484, "no digits dialled")
    if not _DIALABLE.fullmatch(digits):
        raise NumberingError(404, f"{dial!r} is not a dialable number")
    if digits in EMERGENCY:
        return Classified(f"+{COUNTRY_CODE}{digits}", CallClass.emergency)
    if digits.startswith("+"):
        return _international(digits[1:], dial)
    if digits.startswith("00"):
        return _international(digits[2:], dial)
    return _national(digits, dial)


def _international(number: str, dial: str) -> Classified:
    if number.startswith(COUNTRY_CODE):
        return _national(number[len(COUNTRY_CODE) :], dial)
    if not number or number.startswith("0"):
        raise NumberingError(404, f"{dial} has no valid country code")
    if len(number) < _INTL_MIN:
        raise NumberingError(484, f"{dial} is incomplete")
    if len(number) > _INTL_MAX:
        raise NumberingError(404, f"{dial} is longer than any E.164 number")
    return Classified(f"+{number}", CallClass.international)


def _national(number: str, dial: str) -> Classified:
    if number in EMERGENCY:
        return Classified(f"+{COUNTRY_CODE}{number}", CallClass.emergency)
    for prefix, call_class, shortest, longest in _NATIONAL_PLAN:
        if number.startswith(prefix):
            if len(number) < shortest:
                raise NumberingError(484, f"{dial} is incomplete")
            if len(number) > longest:
                raise NumberingError(404, f"{dial} is too long for the Italian plan")
            return Classified(f"+{COUNTRY_CODE}{number}", call_class)
        if prefix.startswith(number):
            # A proper prefix of a known range (e.g. "80"): more digits would make it valid.
            raise NumberingError(484, f"{dial} is incomplete")
    raise NumberingError(404, f"{dial} is not in the Italian numbering plan")


def classify_e164(e164: str) -> Classified:
    """The class of a number already in E.164 (a forwarding or DID target)."""
    return classify(e164)


def normalise_e164(number: str) -> str:
    """An E.164 number from a stored or carrier-supplied form (+39..., 0039..., 06...)."""
    return classify(number).e164
