"""The public utilities answer without a token."""

from centralino_proto.testing import ServiceHarness


async def test_validate_migration_code_without_a_token(harness: ServiceHarness) -> None:
    response = await harness.client.post(
        "/v1/migration-codes/validate", json={"code": "XYZ0212345678001N"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True
    assert body["parts"]["cow"] == "XYZ"
    assert body["parts"]["cor"] == "0212345678"
    assert body["parts"]["cos"] == "001"
    assert body["parts"]["check_character"] == "N"
    assert body["errors"] == [] and body["warnings"] == []


async def test_validate_reports_errors_and_warnings(harness: ServiceHarness) -> None:
    wrong = await harness.client.post(
        "/v1/migration-codes/validate", json={"code": "XYZ0212345678001B"}
    )
    assert wrong.json()["valid"] is True
    assert wrong.json()["warnings"] == ["the check character is B, computed N"]
    missing = await harness.client.post(
        "/v1/migration-codes/validate", json={"code": "XYZ0212345678001"}
    )
    assert missing.json()["valid"] is False
    assert missing.json()["parts"]["expected_check_character"] == "N"
    by_query = await harness.client.get(
        "/v1/migration-codes/validate", params={"code": "XYZ0212345678001N"}
    )
    assert by_query.json()["valid"] is True and by_query.json()["parts"]["cos"] == "001"
    bad = await harness.client.post("/v1/migration-codes/validate", json={})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"


async def test_strict_check_character_setting(harness: ServiceHarness) -> None:
    harness.runtime.settings.migration_check_strict = True  # type: ignore[attr-defined]
    response = await harness.client.post(
        "/v1/migration-codes/validate", json={"code": "XYZ0212345678001B"}
    )
    assert response.json()["valid"] is False
    assert response.json()["errors"] == ["the check character is B, computed N"]


async def test_business_days_across_easter_monday_25_april_1_may(harness: ServiceHarness) -> None:
    # Thursday 2 April 2026 + 20: Easter Monday (6 Apr) and 1 May (Friday) skipped;
    # 25 April 2026 is a Saturday anyway.
    response = await harness.client.get(
        "/v1/calendar/business-days", params={"from": "2026-04-02", "days": 20}
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "from": "2026-04-02",
        "days": 20,
        "date": "2026-05-04",
        "skipped_holidays": [
            {"date": "2026-04-06", "name": "Lunedì dell'Angelo"},
            {"date": "2026-05-01", "name": "Festa del Lavoro"},
        ],
    }
    # 2025: 25 April is a Friday.
    liberation = await harness.client.get(
        "/v1/calendar/business-days", params={"from": "2025-04-24", "days": 1}
    )
    assert liberation.json()["date"] == "2025-04-28"


async def test_business_days_across_4_october(harness: ServiceHarness) -> None:
    response = await harness.client.get(
        "/v1/calendar/business-days", params={"from": "2027-09-30", "days": 2}
    )
    assert response.json()["date"] == "2027-10-05"
    assert [h["date"] for h in response.json()["skipped_holidays"]] == ["2027-10-04"]
    before = await harness.client.get(
        "/v1/calendar/business-days", params={"from": "2024-10-03", "days": 1}
    )
    assert before.json()["date"] == "2024-10-04"
    holidays = await harness.client.get("/v1/calendar/holidays", params={"year": 2026})
    assert "2026-10-04" in [h["date"] for h in holidays.json()]


async def test_business_days_bad_input_is_422(harness: ServiceHarness) -> None:
    for params in (
        {"from": "2026-02-30", "days": 1},
        {"from": "2026-04-02", "days": -1},
        {"from": "2026-04-02"},
        {"days": 3},
        {"from": "2026-04-02", "days": 100000},
    ):
        response = await harness.client.get("/v1/calendar/business-days", params=params)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
