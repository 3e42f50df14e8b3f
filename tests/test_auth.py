"""Every endpoint requires Jupyter's authentication and authorization."""

from __future__ import annotations

import json

import numpy as np
import pytest
from jupyter_server.auth.authorizer import Authorizer

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
