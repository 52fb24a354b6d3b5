"""The admin API lets a call in only with a bearer token the controller accepts: refusals are
401 with `WWW-Authenticate: Bearer` and a JSON problem, decided before a body is read, and
nothing is applied or deleted; reads are closed unless opened by a setting; health and metrics
are always open. The Controller is a fake here, behind the API's `Resources` seam."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from channel.control.api import REFUSAL_LOG_INTERVAL, RefusalLog, create_admin_app
from channel.control.controller import ApplyResult
from channel.control.tokens import INVALID, MISSING, AdminTokens, Refusal

TOKEN = "the-right-token-" + "r" * 16
BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default", "namespace": "ns"},
}


class FakeResources:
    """Stands in for the Controller: keeps what it was asked to apply and delete."""

    ready = True

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {"Broker/ns/default": BROKER}
        self.applied: list[Mapping[str, Any]] = []
        self.deleted: list[str] = []

    async def apply(self, documents: Sequence[Mapping[str, Any]]) -> list[ApplyResult]:
        self.applied.extend(documents)
        return [ApplyResult("Broker", "ns", "default", "created") for _ in documents]

    async def delete(self, keys: Sequence[str]) -> list[ApplyResult]:
        self.deleted.extend(keys)
        return [ApplyResult("Broker", "ns", "default", "deleted") for _ in keys]


@pytest.fixture
def resources() -> FakeResources:
    return FakeResources()


async def _client(resources: FakeResources, *, open_reads: bool = False) -> TestClient[Any, Any]:
    app = create_admin_app(resources, AdminTokens.of([TOKEN]), open_reads=open_reads)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def api(resources: FakeResources) -> AsyncIterator[TestClient[Any, Any]]:
    client = await _client(resources)
    yield client
    await client.close()


@pytest.fixture
async def open_reads_api(resources: FakeResources) -> AsyncIterator[TestClient[Any, Any]]:
    client = await _client(resources, open_reads=True)
    yield client
    await client.close()


CALLS = [
    pytest.param("POST", "/v1/apply", {"documents": [BROKER]}, id="apply"),
    pytest.param(
        "POST", "/v1/delete", {"resources": [{"kind": "Broker", "namespace": "ns", "name": "b"}]}, id="delete"
    ),
    pytest.param("GET", "/v1/resources/Broker?namespace=ns", None, id="list"),
    pytest.param("GET", "/v1/resources/Broker/ns/default", None, id="get"),
]
NO_TOKEN: dict[str, str] = {}
WRONG_TOKEN = {"Authorization": "Bearer not-the-right-token-at-all"}
RIGHT_TOKEN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
@pytest.mark.parametrize(
    ("headers", "refusal"),
    [
        pytest.param(NO_TOKEN, MISSING, id="no token"),
        pytest.param(WRONG_TOKEN, INVALID, id="wrong token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, MISSING, id="another scheme"),
    ],
)
async def test_a_call_without_an_accepted_token_is_refused_and_does_nothing(
    api: TestClient[Any, Any],
    resources: FakeResources,
    method: str,
    path: str,
    body: object,
    headers: dict[str, str],
    refusal: Refusal,
) -> None:
    response = await api.request(method, path, json=body, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == refusal.challenge
    assert await response.json() == {"problems": [{"path": "", "message": refusal.message}]}
    assert resources.applied == [] and resources.deleted == []


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_a_call_with_the_token_is_answered(
    api: TestClient[Any, Any], resources: FakeResources, method: str, path: str, body: object
) -> None:
    response = await api.request(method, path, json=body, headers=RIGHT_TOKEN)
    assert response.status == 200, await response.text()
    assert len(resources.applied) + len(resources.deleted) == (1 if method == "POST" else 0)


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_reads_are_open_only_when_configured(
    open_reads_api: TestClient[Any, Any], resources: FakeResources, method: str, path: str, body: object
) -> None:
    response = await open_reads_api.request(method, path, json=body)
    assert response.status == (200 if method == "GET" else 401)
    assert resources.applied == [] and resources.deleted == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_health_and_metrics_are_open(api: TestClient[Any, Any], path: str) -> None:
    assert (await api.get(path)).status == 200
    assert (await api.head(path)).status == 200
    assert (await api.post(path)).status == 401  # open to read only


async def test_an_unknown_path_is_refused_before_it_is_looked_up(api: TestClient[Any, Any]) -> None:
    assert (await api.post("/v1/nothing")).status == 401
    assert (await api.post("/v1/nothing", headers=RIGHT_TOKEN)).status == 404


async def test_a_refused_body_is_not_read(api: TestClient[Any, Any], resources: FakeResources) -> None:
    """A body over the API's 16 MiB limit gets 401, not 413: the token is checked first."""
    response = await api.post("/v1/apply", data=b"x" * (17 * 1024 * 1024))
    assert response.status == 401
    assert (await api.post("/v1/apply", data=b"{", headers=RIGHT_TOKEN)).status == 400
    assert resources.applied == []


@pytest.mark.parametrize(
    ("times", "logged"),
    [
        pytest.param([0.0], [1], id="the first at once"),
        pytest.param([0.0, 1.0, 2.0], [1, None, None], id="then none for a while"),
        pytest.param(
            [0.0, 1.0, 2.0, REFUSAL_LOG_INTERVAL, REFUSAL_LOG_INTERVAL + 1],
            [1, None, None, 3, None],
            id="then one line with the number since",
        ),
    ],
)
def test_refusals_are_logged_without_flooding(times: list[float], logged: list[int | None]) -> None:
    refusals = RefusalLog()
    assert [refusals.take(now) for now in times] == logged
