"""The consent document the customer signs and sends back (PDF, fpdf2)."""

from __future__ import annotations

from datetime import date

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from .models import PortNumber, PortRequest

LINE_TYPES = {"analog": "Analogica (PSTN)", "isdn": "ISDN", "voip": "VoIP"}
KINDS = {
    "single": "Numero singolo",
    "isdn_primary": "ISDN primario",
    "isdn_additional": "ISDN aggiuntivo",
    "gnr": "Arco GNR",
}


def _latin1(text: str) -> str:
    # The PDF core fonts speak Latin-1; anything else becomes '?' rather than failing.
    return text.encode("latin-1", "replace").decode("latin-1")


def _national(e164: str) -> str:
    return e164[3:] if e164.startswith("+39") else e164


def render(
    request: PortRequest, numbers: list[PortNumber], *, issued: date, operator: str
) -> bytes:
    """The consent PDF: request, customer identity, numbers and migration codes, date."""
    pdf = FPDF(format="A4")
    pdf.set_title(f"Portabilita {request.id}")
    pdf.set_author(operator)
    pdf.set_creator("Centralino portability")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(
        0,
        10,
        _latin1("Richiesta di portabilità del numero (Number Portability)"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_font("Helvetica", "", 10)

    def row(label: str, value: str | None) -> None:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(55, 6, _latin1(label))
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 6, _latin1(value or "-"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    row("Richiesta n.", str(request.id))
    row("Data", issued.strftime("%d/%m/%Y"))
    row("Operatore recipient", operator)
    row("Operatore donating", request.donor_operator)
    row("Intestatario", request.customer_name)
    row("Codice fiscale", request.tax_code)
    row("Partita IVA", request.vat_number)
    row("Tipologia linea", LINE_TYPES.get(request.line_type, request.line_type))
    row("Numero di appoggio", request.temporary_number)
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 10)
    widths = (45, 40, 38, 57)
    for width, title in zip(
        widths, ("Numero", "Tipo", "Numero primario", "Codice di migrazione"), strict=True
    ):
        pdf.cell(width, 7, title, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", "", 10)
    for number in numbers:
        cells = (
            number.e164,
            KINDS.get(number.kind, number.kind),
            number.primary_e164 or "",
            number.migration_code,
        )
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 7, _latin1(text), border=1)
        pdf.ln()
    pdf.ln(4)

    numbers_text = ", ".join(_national(n.e164) for n in numbers)
    pdf.multi_cell(
        0,
        5,
        _latin1(
            f"Il sottoscritto {request.customer_name} chiede a {operator} di richiedere all'operatore "
            f"donating la portabilità dei numeri {numbers_text}, con i codici di migrazione indicati, "
            "e la contestuale cessazione dei servizi a essi collegati presso l'operatore donating. "
            "Dichiara che i dati riportati sono esatti e di essere l'intestatario delle numerazioni. "
            "Si raccomanda di non disdire il contratto con l'operatore donating prima del completamento "
            "della portabilità."
        ),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(12)
    pdf.cell(90, 6, "Luogo e data ______________________")
    pdf.cell(
        0, 6, "Firma dell'intestatario ______________________", new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    return bytes(pdf.output())
