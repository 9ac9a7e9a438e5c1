"""The tenant's own numbers (number.assigned / number.released) stand in for temporary_number."""

import uuid

from centralino_portability.models import TenantNumber
from centralino_proto.events import NumberAssigned, NumberReleased
from centralino_proto.testing import until

from .conftest import Portal


async def test_district_from_the_tenants_own_numbers(portal: Portal) -> None:
    harness = portal.harness
    body = portal.single(temporary_number=None)
    refused = await portal.client.post(portal.base, json=body, headers=portal.headers)
    assert refused.status_code == 422 and "district" in refused.json()["detail"]

    milan = NumberAssigned(
        tenant_id=portal.tenant_id,
        number_id=uuid.uuid4(),
        e164="+39021234567",
        target_kind="extension",
    )
    rome = NumberAssigned(
        tenant_id=portal.tenant_id,
        number_id=uuid.uuid4(),
        e164="+39062022601",
        target_kind="extension",
    )
    await harness.publish(milan, tenant_id=portal.tenant_id)
    await harness.publish(rome, tenant_id=portal.tenant_id)

    async def accepted() -> bool:
        response = await portal.client.post(portal.base, json=body, headers=portal.headers)
        if response.status_code == 201:
            assert response.json()["temporary_number"] == "+39062022601"
        return response.status_code == 201

    await until(accepted, timeout=20, message="the Rome number learnt from number.assigned")

    # Released: the district is unknown again for the next request.
    await harness.publish(
        NumberReleased(tenant_id=portal.tenant_id, number_id=rome.number_id, e164=rome.e164),
        tenant_id=portal.tenant_id,
    )

    async def forgotten() -> bool:
        async with harness.runtime.sessionmaker() as session:
            return await session.get(TenantNumber, rome.e164) is None

    await until(forgotten, timeout=20, message="the released number forgotten")
    again = await portal.client.post(
        portal.base, json=portal.single(temporary_number=None), headers=portal.headers
    )
    assert again.status_code == 422
