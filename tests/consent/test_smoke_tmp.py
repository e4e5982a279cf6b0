from tests.fixtures.builders import capture_body


async def test_capture_then_list(client, tenant):
    r = await client.post("/v1/consent", json=capture_body(tenant), headers=tenant.headers)
    assert r.status_code == 201, r.text
    r = await client.get("/v1/consent", headers=tenant.headers)
    assert r.status_code == 200
    assert r.json()["meta"]["total"] == 1
