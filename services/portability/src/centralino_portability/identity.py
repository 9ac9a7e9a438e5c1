"""The customer's identity: codice fiscale and partita IVA, checksums included."""

from __future__ import annotations

from stdnum.exceptions import ValidationError
from stdnum.it import codicefiscale, iva


def tax_code_problem(value: str) -> tuple[str, str | None]:
    """The normalised codice fiscale and what is wrong with it (None when valid)."""
    compact = codicefiscale.compact(value)
    try:
        codicefiscale.validate(compact)
    except ValidationError as exc:
        return (
            compact,
            f"codice fiscale {compact!r} is not valid: {str(exc).lower().rstrip('.')}",
        )
    return compact, None


def vat_number_problem(value: str) -> tuple[str, str | None]:
    """The normalised partita IVA and what is wrong with it (None when valid)."""
    compact = iva.compact(value)
    if compact.startswith("IT"):
        compact = compact[2:]
    try:
        iva.validate(compact)
    except ValidationError as exc:
        return compact, f"partita IVA {compact!r} is not valid: {str(exc).lower().rstrip('.')}"
    return compact, None
