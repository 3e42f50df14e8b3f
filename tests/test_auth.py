"""Every endpoint requires Jupyter's authentication and authorization."""

from __future__ import annotations

import json

import numpy as np
import pytest
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import PasswordIdentityProvider

ENDPOINTS = ("", "meta", "attr", "data", "stats", "paths")


@pytest.fixture
def sample(write_h5):
    """A file every endpoint can answer about."""
    return write_h5("a.h5", lambda f: f.create_dataset("x", data=np.arange(4)))


def params(endpoint: str) -> dict[str, str]:
    """A query that succeeds with a valid token."""
    return {} if not endpoint else {"file": "a.h5", "path": "/x" if endpoint != "paths" else "/"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": ""}, {"Authorization": "token wrong"}, {"Authorization": "Bearer nope"}],
    ids=["no-token", "wrong-token", "wrong-bearer"],
)
async def test_unauthenticated_is_403(api, sample, endpoint: str, headers: dict) -> None:
    """No token or a wrong one: 403 JSON, nothing of the file."""
    response = await api(endpoint, headers=headers, **params(endpoint))
    assert response.code == 403
    assert b"[0,1,2,3]" not in response.body
    assert "message" in json.loads(response.body)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_token_in_query_or_header(api, jp_serverapp, sample, endpoint: str) -> None:
    """The server's token works as a header (the default of `api`) and as ?token=."""
    assert (await api(endpoint, **params(endpoint))).code == 200
    token = jp_serverapp.identity_provider.token
    response = await api(endpoint, headers={"Authorization": ""}, token=token, **params(endpoint))
    assert response.code == 200


async def test_head_unauthenticated(api) -> None:
    """HEAD of the root is authenticated too."""
    response = await api("", method="HEAD", headers={"Authorization": ""})
    assert response.code == 403


class DenyContents(Authorizer):
    """Refuses reading contents, allows everything else."""

    def is_authorized(self, handler, user, action, resource) -> bool:  # type: ignore[override]
        return resource != "contents"


class TestAuthorizer:
    """With an authorizer that refuses 'contents', every endpoint refuses."""

    @pytest.fixture
    def h5grove_config(self):
        """Use an authorizer that denies the 'contents' resource."""
        return {"ServerApp": {"authorizer_class": DenyContents}}

    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    async def test_authorizer_denies_contents(self, api, sample, endpoint: str) -> None:
        """Endpoints are authorized as reads of 'contents', like Jupyter's contents API."""
        response = await api(endpoint, **params(endpoint))
        assert response.code == 403
        assert json.loads(response.body)["message"].startswith("User is not authorized")


async def test_remembered_login_checks_every_request(api, sample) -> None:
    """Credentials accepted a moment ago do not let other credentials in (the identity of
    requests is remembered by their exact credentials only)."""
    assert (await api("meta", **params("meta"))).code == 200
    for headers in ({"Authorization": "token wrong"}, {"Authorization": ""}):
        assert (await api("meta", headers=headers, **params("meta"))).code == 403


async def test_token_requests_get_one_login_cookie(api, sample) -> None:
    """Jupyter answers every request authenticated by a token alone with a new login cookie;
    repeated within seconds, the same credentials are taken as known: no new cookie."""
    first = await api("meta", **params("meta"))
    again = await api("meta", **params("meta"))
    assert (first.code, again.code) == (200, 200)
    assert any("username-" in c for c in first.headers.get_list("Set-Cookie"))
    assert not any("username-" in c for c in again.headers.get_list("Set-Cookie"))


async def test_remembered_login_keeps_the_origin_rule(api, sample) -> None:
    """A request from another origin is accepted with the token (Jupyter's rule) and refused
    with the login cookie alone, before and after the credentials are remembered."""
    first = await api("meta", **params("meta"))
    cookie = "; ".join(c.split(";", 1)[0] for c in first.headers.get_list("Set-Cookie"))
    foreign = {"Origin": "http://elsewhere.example"}
    for _ in range(2):
        assert (await api("meta", headers=foreign, **params("meta"))).code == 200
        cookie_only = {**foreign, "Authorization": "", "Cookie": cookie}
        assert (await api("meta", headers=cookie_only, **params("meta"))).code == 404
        same_origin = {"Authorization": "", "Cookie": cookie}
        assert (await api("meta", headers=same_origin, **params("meta"))).code == 200


class CountingIdentity(PasswordIdentityProvider):
    """A custom identity provider: asked for every request, counted."""

    asked = 0

    async def _get_user(self, handler):  # type: ignore[no-untyped-def]
        CountingIdentity.asked += 1
        return await super()._get_user(handler)


class TestCustomIdentity:
    """Another identity provider (JupyterHub's, a site's own) is asked every time."""

    @pytest.fixture
    def h5grove_config(self):
        return {"ServerApp": {"identity_provider_class": CountingIdentity}}

    async def test_asked_every_time(self, api, sample) -> None:
        before = CountingIdentity.asked
        for _ in range(3):
            assert (await api("meta", **params("meta"))).code == 200
        assert CountingIdentity.asked - before == 3
