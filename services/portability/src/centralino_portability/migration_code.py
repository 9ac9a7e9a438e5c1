"""Italian migration codes (AGCOM 274/07/CONS): COW + COR + COS + check character."""

from __future__ import annotations

import string
from collections.abc import Collection
from dataclasses import dataclass, field

MAX_LENGTH = 18
COW_LENGTH = 3
COR_MAX = 12
COR_USUAL_MIN = 8
COS_LENGTH = 3

# The codice fiscale control-character tables: odd positions (1st, 3rd...) through
# the 'dispari' table, even positions by value (digits 0-9, letters A=0..Z=25).
_ODD_VALUES = (1, 0, 5, 7, 9, 13, 15, 17, 19, 21)  # the digits 0-9, and A-J alike
_ODD = dict(
    zip(
        string.digits + string.ascii_uppercase,
        (*_ODD_VALUES, *_ODD_VALUES, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23),
        strict=True,
    )
)
_EVEN = {
    **{d: int(d) for d in string.digits},
    **{c: i for i, c in enumerate(string.ascii_uppercase)},
}
_ALNUM = set(string.digits + string.ascii_uppercase)


def check_character(body: str) -> str:
    """The control character of a code body, computed like the codice fiscale's."""
    total = sum(_ODD[c] if i % 2 == 0 else _EVEN[c] for i, c in enumerate(body.upper()))
    return string.ascii_uppercase[total % 26]


@dataclass
class Validation:
    """What a migration code says and what is wrong with it."""

    code: str
    parts: dict[str, str | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def normalise(code: str) -> str:
    """Upper case, without the spaces, dots and dashes bills print for readability."""
    return "".join(c for c in code.upper() if c not in " .-\t")


def validate(code: str, *, cos_values: Collection[str], strict_check: bool = False) -> Validation:
    """Validates a migration code's structure and its check character."""
    normal = normalise(code)
    result = Validation(
        code=normal,
        parts={
            "cow": None,
            "cor": None,
            "cos": None,
            "check_character": None,
            "expected_check_character": None,
        },
    )
    if not normal:
        result.errors.append("the migration code is empty")
        return result
    bad = sorted({c for c in normal if c not in _ALNUM})
    if bad:
        result.errors.append(f"only letters and digits are allowed, found {''.join(bad)!r}")
        return result
    if len(normal) > MAX_LENGTH:
        result.errors.append(f"{len(normal)} characters, at most {MAX_LENGTH} are allowed")
    if len(normal) < COW_LENGTH + 2:
        result.errors.append("too short: a code is COW (3) + COR + COS (3) + check character")
        return result

    check = normal[-1]
    if check.isalpha():
        body = normal[:-1]
    else:
        # A digit cannot be a check character (it is always A-Z): the code lacks it.
        body, check = normal, ""
    cow, rest = body[:COW_LENGTH], body[COW_LENGTH:]
    cos: str | None = None
    if len(rest) > COS_LENGTH and rest[-COS_LENGTH:] in cos_values:
        cos, cor = rest[-COS_LENGTH:], rest[:-COS_LENGTH]
    elif len(rest) > COR_MAX and rest[-COS_LENGTH:].isdigit():
        cos, cor = rest[-COS_LENGTH:], rest[:-COS_LENGTH]
        result.errors.append(f"unknown service code (COS) {cos}")
    else:
        cor = rest
        result.warnings.append("no service code (COS) recognised at the end of the code")
    expected = check_character(body)
    result.parts.update(
        cow=cow, cor=cor, cos=cos, check_character=check or None, expected_check_character=expected
    )

    if not cor:
        result.errors.append("the resource code (COR) is missing")
    elif len(cor) > COR_MAX:
        result.errors.append(
            f"the resource code (COR) has {len(cor)} characters, at most {COR_MAX}"
        )
    elif len(cor) < COR_USUAL_MIN:
        result.warnings.append(
            f"the resource code (COR) is shorter than the usual {COR_USUAL_MIN} characters"
        )
    if not check:
        result.errors.append(f"the check character is missing (expected {expected})")
    elif check != expected:
        message = f"the check character is {check}, computed {expected}"
        (result.errors if strict_check else result.warnings).append(message)
    return result
