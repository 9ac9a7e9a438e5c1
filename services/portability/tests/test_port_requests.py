"""Port requests over HTTP: the rules, the state machine, the timeline, attachments, consent."""

import asyncio
import io
import itertools
import uuid
from typing import Any

from PIL import Image
from pypdf import PdfReader

from centralino_portability import calendar
from centralino_proto.testing import ServiceHarness

from .conftest import ROME_TEMPORARY, TAX_CODE, VAT_NUMBER, FakeClock, Portal, code_for, rome

STATES = [
    "draft",
    "submitted",
    "taken_in_charge",
    "unlocked",
    "scheduled",
    "completed",
    "closed",
    "rejected",
    "cancelled",
]
LEGAL = {
    ("draft", "submitted"),
    ("draft", "cancelled"),
    ("submitted", "taken_in_charge"),
    ("submitted", "rejected"),
    ("submitted", "cancelled"),
    ("taken_in_charge", "unlocked"),
    ("taken_in_charge", "rejected"),
    ("taken_in_charge", "cancelled"),
    ("unlocked", "scheduled"),
    ("unlocked", "rejected"),
    ("unlocked", "cancelled"),
    ("scheduled", "scheduled"),
    ("scheduled", "completed"),
    ("scheduled", "rejected"),
    ("scheduled", "cancelled"),
    ("completed", "closed"),
    ("rejected", "submitted"),
    ("rejected", "cancelled"),
}
# How to reach each state from a fresh draft (the signed consent does draft -> submitted).
PATHS = {
    "draft": [],
    "submitted": ["submitted"],
    "taken_in_charge": ["submitted", "taken_in_charge"],
    "unlocked": ["submitted", "taken_in_charge", "unlocked"],
    "scheduled": ["submitted", "taken_in_charge", "unlocked", "scheduled"],
    "completed": ["submitted", "taken_in_charge", "unlocked", "scheduled", "completed"],
    "closed": ["submitted", "taken_in_charge", "unlocked", "scheduled", "completed", "closed"],
    "rejected": ["submitted", "rejected"],
    "cancelled": ["cancelled"],
}


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, format="PNG")
    return out.getvalue()


async def attempt(portal: Portal, request_id: str, to: str, clock: FakeClock) -> int:
    """Tries one move the way each is made; returns the status."""
    if to == "submitted":
        return (await portal.sign(request_id)).status_code
    extra: dict[str, Any] = {}
    if to == "rejected":
        extra["reason"] = "invalid_migration_code"
    if to == "scheduled":
        current = (await portal.get(request_id))["expected_completion"]
        today = clock().date()
        proposal = calendar.add_business_days(today, 12)
        if current == proposal.isoformat():
            proposal = calendar.add_business_days(today, 13)
        extra["expected_completion"] = proposal.isoformat()
    return (await portal.move(request_id, to, **extra)).status_code


async def test_create_draft_publishes_port_requested(portal: Portal) -> None:
    async with portal.harness.probe("port.requested") as probe:
        response = await portal.client.post(
            portal.base,
            json=portal.single(
                customer={
                    "name": "Rossi S.r.l.",
                    "tax_code": "rssmra85t10a562s",
                    "vat_number": "IT07643520567",
                }
            ),
            headers=portal.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert response.headers["location"].endswith(body["id"])
        assert body["state"] == "draft"
        assert body["customer"] == {
            "name": "Rossi S.r.l.",
            "tax_code": TAX_CODE,
            "vat_number": VAT_NUMBER,
        }
        assert body["numbers"][0]["e164"] == "+390620000001"
        assert body["allowed_transitions"] == ["cancelled", "submitted"]
        [envelope] = await probe.wait_for("port.requested")
    assert envelope.tenant_id == portal.tenant_id
    assert str(envelope.data.port_request_id) == body["id"]
    assert envelope.data.numbers == ["+390620000001"]
    listed = await portal.client.get(portal.base, headers=portal.headers)
    assert [r["id"] for r in listed.json()] == [body["id"]]


INVALID: list[tuple[dict[str, Any], int, str]] = [
    ({"customer": {"name": "X", "tax_code": "RSSMRA85T10A562T"}}, 422, "codice fiscale"),
    ({"customer": {"name": "X", "vat_number": "07643520568"}}, 422, "partita IVA"),
    ({"customer": {"name": "X"}}, 422, "codice fiscale (tax_code) or a partita IVA"),
    ({"temporary_number": "+39021234567"}, 422, "district"),
    ({"temporary_number": None}, 422, "temporary_number"),
    ({"line_type": "isdn"}, 422, "ISDN line"),
    ({"line_type": "fax"}, 422, "does not match the schema"),
    (
        {"numbers": [{"number": "+393351234567", "migration_code": code_for("3351234567")}]},
        422,
        "mobile",
    ),
    (
        {"numbers": [{"number": "0612", "migration_code": code_for("0612")}]},
        422,
        "incomplete",
    ),
    (
        {"numbers": [{"number": "+390612345678", "migration_code": "TLC0612345678001"}]},
        422,
        "check character is missing",
    ),
    (
        {
            "numbers": [
                {"number": "+390612345678", "migration_code": code_for("0612345678")},
                {"number": "06 12345678", "migration_code": code_for("0612345678")},
            ]
        },
        422,
        "twice",
    ),
]


async def test_invalid_requests_are_refused_whole(portal: Portal) -> None:
    for change, status, needle in INVALID:
        response = await portal.client.post(
            portal.base, json=portal.single(**change), headers=portal.headers
        )
        assert response.status_code == status, (change, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert needle in response.text, (needle, response.text)
    # Nothing half-written.
    assert (await portal.client.get(portal.base, headers=portal.headers)).json() == []


async def test_isdn_additional_needs_its_primary(portal: Portal) -> None:
    primary, primary_nat = rome(500)
    extra, extra_nat = rome(501)
    additional = {
        "kind": "isdn_additional",
        "number": extra,
        "primary": primary,
        "migration_code": code_for(extra_nat, cos="002"),
    }
    alone = portal.single(line_type="isdn", numbers=[additional])
    refused = await portal.client.post(portal.base, json=alone, headers=portal.headers)
    assert refused.status_code == 422
    assert "cannot be ported without its primary" in refused.json()["detail"]
    assert refused.json()["rule"] == "isdn_primary"

    together = portal.single(
        line_type="isdn",
        numbers=[
            {
                "kind": "isdn_primary",
                "number": primary,
                "migration_code": code_for(primary_nat, cos="002"),
            },
            additional,
        ],
    )
    created = await portal.create(together)
    assert [(n["kind"], n["e164"], n["primary"]) for n in created["numbers"]] == [
        ("isdn_primary", primary, None),
        ("isdn_additional", extra, primary),
    ]


async def test_isdn_additional_after_the_primary_was_ported(
    portal: Portal, clock: FakeClock
) -> None:
    primary, primary_nat = rome(600)
    first = await portal.create(
        portal.single(
            line_type="isdn",
            numbers=[
                {
                    "kind": "isdn_primary",
                    "number": primary,
                    "migration_code": code_for(primary_nat, cos="002"),
                }
            ],
        )
    )
    extra, extra_nat = rome(601)
    later = portal.single(
        line_type="isdn",
        numbers=[
            {
                "kind": "isdn_additional",
                "number": extra,
                "primary": primary,
                "migration_code": code_for(extra_nat, cos="002"),
            }
        ],
    )
    # Still open: the primary is not ported yet.
    assert (
        await portal.client.post(portal.base, json=later, headers=portal.headers)
    ).status_code == 422
    for step in PATHS["completed"]:
        assert await attempt(portal, first["id"], step, clock) == 200
    assert (
        await portal.client.post(portal.base, json=later, headers=portal.headers)
    ).status_code == 201


async def test_gnr_range_expands_to_e164_numbers(portal: Portal) -> None:
    body = portal.single(
        line_type="isdn",
        numbers=[
            {
                "kind": "gnr",
                "number": "06 123450",
                "extensions": {"first": "0", "last": "9"},
                "migration_code": code_for("06123450", cos="003"),
            }
        ],
    )
    created = await portal.create(body)
    assert [n["e164"] for n in created["numbers"]] == [f"+3906123450{d}" for d in range(10)]
    assert {n["gnr_root"] for n in created["numbers"]} == {"+3906123450"}
    bad = portal.single(
        line_type="isdn",
        numbers=[
            {
                "kind": "gnr",
                "number": "06 123451",
                "extensions": {"first": "9", "last": "0"},
                "migration_code": code_for("06123451"),
            }
        ],
    )
    assert (
        await portal.client.post(portal.base, json=bad, headers=portal.headers)
    ).status_code == 422


async def test_one_open_request_per_number(portal: Portal) -> None:
    body = portal.single()
    first = await portal.create(body)
    again = await portal.client.post(portal.base, json=body, headers=portal.headers)
    assert again.status_code == 409
    assert again.json()["port_request_id"] == first["id"]
    assert (await portal.move(first["id"], "cancelled", headers=portal.headers)).status_code == 200
    assert (
        await portal.client.post(portal.base, json=body, headers=portal.headers)
    ).status_code == 201


async def test_every_transition_legal_or_409(portal: Portal, clock: FakeClock) -> None:
    checked = 0
    for origin, target in itertools.product(STATES, STATES):
        created = await portal.create()
        for step in PATHS[origin]:
            assert await attempt(portal, created["id"], step, clock) == 200, (origin, step)
        assert (await portal.get(created["id"]))["state"] == origin
        status = await attempt(portal, created["id"], target, clock)
        expected = 200 if (origin, target) in LEGAL else 409
        assert status == expected, (origin, target, status)
        after = (await portal.get(created["id"]))["state"]
        assert after == (target if expected == 200 else origin)
        checked += 1
    assert checked == 81


async def test_illegal_transition_answer(portal: Portal) -> None:
    created = await portal.create()
    response = await portal.move(created["id"], "completed")
    assert response.status_code == 409
    problem = response.json()
    assert problem["title"] == "Illegal transition"
    assert problem["state"] == "draft"
    assert problem["allowed"] == ["cancelled", "submitted"]
    # Submitting is done with the signed consent, never by a bare transition.
    assert (await portal.move(created["id"], "submitted")).status_code == 409


async def test_transition_parameters_are_checked(portal: Portal, clock: FakeClock) -> None:
    created = await portal.create()
    assert (await portal.sign(created["id"])).status_code == 200
    no_reason = await portal.move(created["id"], "rejected")
    assert no_reason.status_code == 422
    bad_reason = await portal.move(created["id"], "rejected", reason="bad_weather")
    assert bad_reason.status_code == 422
    for step in ("taken_in_charge", "unlocked"):
        assert (await portal.move(created["id"], step)).status_code == 200
    # 4 October 2026 is a Sunday; Saturday 3 October is no business day either.
    saturday = await portal.move(created["id"], "scheduled", expected_completion="2026-10-03")
    assert saturday.status_code == 422
    past = await portal.move(created["id"], "scheduled", expected_completion="2026-09-18")
    assert past.status_code == 422
    ok = await portal.move(created["id"], "scheduled", expected_completion="2026-10-06")
    assert ok.status_code == 200
    assert ok.json()["expected_completion"] == "2026-10-06"
    assert ok.json()["expected_closure"] == "2026-10-07"
    same = await portal.move(created["id"], "scheduled", expected_completion="2026-10-06")
    assert same.status_code == 422
    moved = await portal.move(created["id"], "scheduled", expected_completion="2026-10-09")
    assert moved.status_code == 200 and moved.json()["expected_completion"] == "2026-10-09"


async def test_who_may_do_what(portal: Portal, harness: ServiceHarness) -> None:
    created = await portal.create()
    assert (await portal.sign(created["id"])).status_code == 200
    # The tenant cannot act for the donor.
    assert (
        await portal.move(created["id"], "taken_in_charge", headers=portal.headers)
    ).status_code == 403
    reseller = harness.mint.headers("reseller", reseller_id=None)
    assert (
        await portal.move(created["id"], "taken_in_charge", headers=reseller)
    ).status_code == 404
    service = harness.mint.headers("service")
    assert (await portal.move(created["id"], "taken_in_charge", headers=service)).status_code == 200
    user = harness.mint.headers("tenant_user", tenant_id=portal.tenant_id)
    assert (
        await portal.client.post(portal.base, json=portal.single(), headers=user)
    ).status_code == 403
    assert (await portal.move(created["id"], "cancelled", headers=user)).status_code == 403
    assert (
        await portal.client.get(f"{portal.base}/{created['id']}", headers=user)
    ).status_code == 200
    other = await harness.add_tenant("bellavista")
    stranger = harness.mint.headers("tenant_admin", tenant_id=other.tenant_id)
    assert (
        await portal.client.get(f"{portal.base}/{created['id']}", headers=stranger)
    ).status_code == 404
    wrong_tenant = await portal.client.get(
        f"/v1/tenants/bellavista/port-requests/{created['id']}", headers=stranger
    )
    assert wrong_tenant.status_code == 404
    assert (await portal.client.get(portal.base)).status_code == 401
    assert (
        await portal.move(created["id"], "cancelled", headers=portal.headers)
    ).status_code == 200


async def test_timeline_with_actors_and_private_comments(portal: Portal, clock: FakeClock) -> None:
    created = await portal.create(portal.single(comment="please port our historic number"))
    rid = created["id"]
    clock.advance(minutes=5)
    public = await portal.client.post(
        f"{portal.base}/{rid}/comments", json={"text": "bill attached soon"}, headers=portal.headers
    )
    assert public.status_code == 201 and public.json()["actor"] == "tenant_admin:test-user"
    private_by_tenant = await portal.client.post(
        f"{portal.base}/{rid}/comments", json={"text": "x", "public": False}, headers=portal.headers
    )
    assert private_by_tenant.status_code == 403
    note = await portal.client.post(
        f"{portal.base}/{rid}/comments",
        json={"text": "donor is slow this month", "public": False},
        headers=portal.operator,
    )
    assert note.status_code == 201
    assert (await portal.sign(rid)).status_code == 200
    assert (
        await portal.move(rid, "taken_in_charge", comment="checked the code", public=False)
    ).status_code == 200

    staff = (
        await portal.client.get(f"{portal.base}/{rid}/timeline", headers=portal.operator)
    ).json()
    tenant = (
        await portal.client.get(f"{portal.base}/{rid}/timeline", headers=portal.headers)
    ).json()
    assert [e["kind"] for e in staff] == [
        "created",
        "comment",
        "comment",
        "attachment",
        "transition",
        "transition",
    ]
    assert [e["kind"] for e in tenant] == ["created", "comment", "attachment", "transition"]
    assert staff[0]["comment"] == "please port our historic number"
    assert staff[2]["public"] is False and staff[2]["actor"] == "operator:test-user"
    assert staff[4]["from_state"] == "draft" and staff[4]["to_state"] == "submitted"
    assert staff[5]["to_state"] == "taken_in_charge" and staff[5]["comment"] == "checked the code"
    assert staff[0]["at"] < staff[1]["at"]
    assert "donor is slow" not in str(tenant)


async def test_bill_attachment_type_size_and_name(portal: Portal, harness: ServiceHarness) -> None:
    rid = (await portal.create())["id"]
    url = f"{portal.base}/{rid}/attachments"
    pdf = await portal.consent(rid)
    uploaded = await portal.client.post(
        url,
        files={"file": ("../../etc/bolletta marzo.pdf", pdf, "text/plain")},
        headers=portal.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    meta = uploaded.json()
    assert meta["content_type"] == "application/pdf" and meta["kind"] == "bill"
    assert meta["filename"] == "bolletta_marzo.pdf" and meta["size"] == len(pdf)
    image = await portal.client.post(
        url, files={"file": ("scan.jpg", png(), "image/jpeg")}, headers=portal.headers
    )
    assert image.status_code == 201 and image.json()["content_type"] == "image/png"
    assert image.json()["filename"] == "scan.png"
    text = await portal.client.post(
        url,
        files={"file": ("bill.pdf", b"just some text, not a bill", "application/pdf")},
        headers=portal.headers,
    )
    assert text.status_code == 415
    empty = await portal.client.post(
        url, files={"file": ("bill.pdf", b"", "application/pdf")}, headers=portal.headers
    )
    assert empty.status_code == 422
    harness.runtime.settings.attachment_max_bytes = 1024  # type: ignore[attr-defined]
    large = await portal.client.post(
        url, files={"file": ("bill.pdf", pdf, "application/pdf")}, headers=portal.headers
    )
    assert large.status_code == 413
    listed = (await portal.client.get(url, headers=portal.headers)).json()
    assert [a["content_type"] for a in listed] == ["application/pdf", "image/png"]
    download = await portal.client.get(f"{url}/{meta['id']}", headers=portal.headers)
    assert download.content == pdf
    assert download.headers["content-type"] == "application/pdf"
    assert 'filename="bolletta_marzo.pdf"' in download.headers["content-disposition"]


async def test_consent_pdf_holds_numbers_codes_and_identity(portal: Portal) -> None:
    primary, primary_nat = rome(700)
    extra, extra_nat = rome(701)
    codes = [code_for(primary_nat, cos="002"), code_for(extra_nat, cos="002")]
    created = await portal.create(
        portal.single(
            line_type="isdn",
            customer={"name": "Rossi Mario", "tax_code": TAX_CODE, "vat_number": VAT_NUMBER},
            numbers=[
                {"kind": "isdn_primary", "number": primary, "migration_code": codes[0]},
                {
                    "kind": "isdn_additional",
                    "number": extra,
                    "primary": primary,
                    "migration_code": codes[1],
                },
            ],
        )
    )
    pdf = await portal.consent(created["id"])
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    for needle in (
        primary,
        extra,
        *codes,
        "Rossi Mario",
        TAX_CODE,
        VAT_NUMBER,
        ROME_TEMPORARY,
        "ISDN",
        created["id"],
        "21/09/2026",
        "TIM",
    ):
        assert needle in text, needle
    assert "portabilità" in text


async def test_signed_consent_submits_the_draft(portal: Portal) -> None:
    created = await portal.create()
    rid = created["id"]
    refused = await portal.client.post(
        f"{portal.base}/{rid}/signed-consent",
        files={"file": ("signed.txt", b"I agree", "text/plain")},
        headers=portal.headers,
    )
    assert refused.status_code == 415
    assert (await portal.get(rid))["state"] == "draft"
    async with portal.harness.probe("port.state_changed") as probe:
        signed = await portal.client.post(
            f"{portal.base}/{rid}/signed-consent",
            files={"file": ("firmato.png", png(), "image/png")},
            headers=portal.headers,
        )
        assert signed.status_code == 200, signed.text
        [envelope] = await probe.wait_for("port.state_changed")
    body = signed.json()
    assert body["state"] == "submitted"
    # Monday 21 September 2026 + 10 business days.
    assert body["expected_completion"] == "2026-10-05"
    assert envelope.data.from_state == "draft" and envelope.data.to_state == "submitted"
    assert envelope.data.expected_completion.isoformat() == "2026-10-05"
    kinds = [
        a["kind"]
        for a in (
            await portal.client.get(f"{portal.base}/{rid}/attachments", headers=portal.headers)
        ).json()
    ]
    assert kinds == ["signed_consent"]
    again = await portal.sign(rid)
    assert again.status_code == 409


async def test_rejected_request_is_corrected_and_submitted_again(portal: Portal) -> None:
    created = await portal.create()
    rid = created["id"]
    assert (await portal.sign(rid)).status_code == 200
    # Not editable once submitted.
    assert (
        await portal.client.put(
            f"{portal.base}/{rid}", json=portal.single(), headers=portal.headers
        )
    ).status_code == 409
    rejected = await portal.move(
        rid, "rejected", reason="wrong_line_type", comment="the line is ISDN"
    )
    assert rejected.json()["reject_reason"] == "wrong_line_type"
    number, national = rome(1)
    corrected = portal.single(
        line_type="isdn",
        numbers=[
            {
                "kind": "isdn_primary",
                "number": number,
                "migration_code": code_for(national, cos="002"),
            }
        ],
    )
    fixed = await portal.client.put(f"{portal.base}/{rid}", json=corrected, headers=portal.headers)
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["line_type"] == "isdn" and fixed.json()["state"] == "rejected"
    resubmitted = await portal.sign(rid)
    assert resubmitted.status_code == 200
    assert (
        resubmitted.json()["state"] == "submitted" and resubmitted.json()["reject_reason"] is None
    )


async def test_a_ported_number_cannot_be_requested_again(portal: Portal, clock: FakeClock) -> None:
    body = portal.single()
    created = await portal.create(body)
    for step in PATHS["completed"]:
        assert await attempt(portal, created["id"], step, clock) == 200
    again = await portal.client.post(portal.base, json=body, headers=portal.headers)
    assert again.status_code == 409
    assert again.json()["title"] == "Number already ported in"


async def test_control_characters_and_far_dates_are_422(portal: Portal) -> None:
    nul = portal.single(customer={"name": "Rossi\x00", "vat_number": VAT_NUMBER})
    assert (
        await portal.client.post(portal.base, json=nul, headers=portal.headers)
    ).status_code == 422
    blank = portal.single(customer={"name": "   ", "vat_number": VAT_NUMBER})
    assert (
        await portal.client.post(portal.base, json=blank, headers=portal.headers)
    ).status_code == 422
    created = await portal.create()
    assert (await portal.sign(created["id"])).status_code == 200
    for step in ("taken_in_charge", "unlocked"):
        assert (await portal.move(created["id"], step)).status_code == 200
    far = await portal.move(created["id"], "scheduled", expected_completion="9999-12-31")
    assert far.status_code == 422
    end = await portal.client.get(
        "/v1/calendar/business-days", params={"from": "9999-12-30", "days": 5}
    )
    assert end.status_code == 422


async def test_bill_removed_only_while_editable(portal: Portal, harness: ServiceHarness) -> None:
    rid = (await portal.create())["id"]
    url = f"{portal.base}/{rid}/attachments"
    bill = await portal.client.post(
        url, files={"file": ("bill.png", png(), "image/png")}, headers=portal.headers
    )
    second = await portal.client.post(
        url, files={"file": ("bill2.png", png(), "image/png")}, headers=portal.headers
    )
    removed = await portal.client.delete(f"{url}/{bill.json()['id']}", headers=portal.headers)
    assert removed.status_code == 204
    assert [a["id"] for a in (await portal.client.get(url, headers=portal.headers)).json()] == [
        second.json()["id"]
    ]
    assert (await portal.sign(rid)).status_code == 200
    kept = await portal.client.delete(f"{url}/{second.json()['id']}", headers=portal.headers)
    assert kept.status_code == 409
    # A huge upload is refused from its Content-Length, before the body is read.
    harness.runtime.settings.attachment_max_bytes = 10  # type: ignore[attr-defined]
    huge = await portal.client.post(
        url,
        content=b"x" * (70 * 1024),
        headers={**portal.headers, "content-type": "multipart/form-data; boundary=b"},
    )
    assert huge.status_code == 413
    assert huge.headers["content-type"] == "application/problem+json"


async def test_concurrent_requests_for_one_number(portal: Portal) -> None:
    body = portal.single()
    responses = await asyncio.gather(
        *(portal.client.post(portal.base, json=body, headers=portal.headers) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    assert all(
        r.headers["content-type"] == "application/problem+json"
        for r in responses
        if r.status_code == 409
    )
    assert len((await portal.client.get(portal.base, headers=portal.headers)).json()) == 1


async def test_back_office_queue_across_tenants(
    portal: Portal, harness: ServiceHarness, clock: FakeClock
) -> None:
    reseller_id = uuid.uuid4()
    other = await harness.add_tenant("bellavista", reseller_id=reseller_id)
    other_admin = harness.mint.headers("tenant_admin", tenant_id=other.tenant_id)
    mine = await portal.create()
    assert (await portal.sign(mine["id"])).status_code == 200
    clock.advance(minutes=1)
    number, national = rome(900)
    theirs = await portal.client.post(
        "/v1/tenants/bellavista/port-requests",
        json=portal.single(numbers=[{"number": number, "migration_code": code_for(national)}]),
        headers=other_admin,
    )
    assert theirs.status_code == 201
    queue = await portal.client.get("/v1/port-requests", headers=portal.operator)
    assert [r["id"] for r in queue.json()] == [mine["id"], theirs.json()["id"]]
    submitted = await portal.client.get(
        "/v1/port-requests", params={"state": "submitted"}, headers=portal.operator
    )
    assert [r["id"] for r in submitted.json()] == [mine["id"]]
    reseller = harness.mint.headers("reseller", reseller_id=reseller_id)
    own = await portal.client.get("/v1/port-requests", headers=reseller)
    assert [r["id"] for r in own.json()] == [theirs.json()["id"]]
    assert (await portal.client.get("/v1/port-requests", headers=portal.headers)).status_code == 403
