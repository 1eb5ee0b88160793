"""Hypothesis requests built from the live `/openapi.json`: whatever arrives, never a 5xx.

Bodies come from the documented Proposal schema (so many get deep into validation), from the
example with one field swapped for junk, and from arbitrary JSON and bytes.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from interlock.settings import Settings
from tests.integration.api.support import intake_settings, running_api
from tests.support import new_id

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
HEADER_TEXT = st.from_regex(r"[!-~]{1,40}", fullmatch=True)


def from_schema(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for values of one JSON schema node (the subset FastAPI/pydantic emit)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: from_schema(root["components"]["schemas"][name], root))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, root) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        fixed = {k: from_schema(v, root) for k, v in properties.items() if k in required}
        optional = {k: from_schema(v, root) for k, v in properties.items() if k not in required}
        if not properties and isinstance(schema.get("additionalProperties"), dict):
            values = from_schema(schema["additionalProperties"], root)
            return st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), values, max_size=3)
        return st.fixed_dictionaries(fixed, optional=optional)
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {}), root),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 3), 3),
        )
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"])
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat() + "Z")
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 30), 30))
    if kind == "number":
        return st.floats(min_value=schema.get("minimum"), max_value=schema.get("maximum"), allow_nan=False)
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON


def bodies(openapi: dict[str, Any], recommender: str) -> st.SearchStrategy[bytes]:
    content = openapi["paths"]["/v1/proposals"]["post"]["requestBody"]["content"]
    example: dict[str, Any] = content["application/json"]["example"]
    # Half of the conforming documents name the caller, to get past the impersonation check.
    conforming = st.tuples(from_schema(content["application/json"]["schema"], openapi), st.booleans()).map(
        lambda pair: {**pair[0], "recommender": recommender} if pair[1] else pair[0]
    )

    prefix = new_id("fz")

    @st.composite
    def mutated(draw: st.DrawFn) -> dict[str, Any]:
        doc = json.loads(json.dumps(example))
        # Few ids, so some repeat: replays, 200s and 409s get exercised too.
        doc["proposal_id"] = f"{prefix}-{draw(st.sampled_from('abc'))}"
        doc["recommender"] = recommender
        if draw(st.booleans()):
            doc["confidence"] = draw(st.floats(0, 1))
        else:
            doc[draw(st.sampled_from(sorted(doc)))] = draw(JSON)
        return doc

    documents = st.one_of(conforming, mutated(), JSON)
    return st.one_of(documents.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200))


def documented(openapi: dict[str, Any], path: str, method: str) -> set[int]:
    return {int(code) for code in openapi["paths"][path][method]["responses"]}


async def test_no_request_built_from_the_schema_gets_a_5xx(
    settings: Settings, task_queue: str, tmp_path: Path
) -> None:
    # No worker on this queue: a fuzzed body that happens to be valid starts a workflow
    # that waits, instead of running Ansible.
    intake = intake_settings(settings, tmp_path / "home", task_queue)
    async with running_api(intake, rate="100000/second") as api:
        token = api.token()
        async with httpx.AsyncClient(base_url=api.url) as http:
            openapi = (await http.get("/openapi.json")).json()

        requests = st.one_of(
            st.tuples(
                st.just("post"),
                st.just("/v1/proposals"),
                bodies(openapi, "triage-bot"),
                st.none() | HEADER_TEXT,
            ),
            st.tuples(
                st.just("get"),
                st.text(min_size=1, max_size=40).map(lambda s: "/v1/proposals/" + quote(s, safe="")),
                st.none(),
                st.none(),
            ),
            st.tuples(
                st.just("get"),
                st.tuples(st.text(max_size=20), st.integers(-5, 1000)).map(
                    lambda q: f"/v1/proposals?status={quote(q[0])}&limit={q[1]}"
                ),
                st.none(),
                st.none(),
            ),
        )
        seen: list[int] = []

        def fuzz() -> None:
            with httpx.Client(base_url=api.url, timeout=30) as http:

                @hypothesis_settings(
                    max_examples=80,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                )
                @given(request=requests)
                def check(request: tuple[str, str, bytes | None, str | None]) -> None:
                    method, url, body, key = request
                    headers = {"Authorization": f"Bearer {token}"}
                    if key is not None:
                        headers["Idempotency-Key"] = key
                    response = http.request(method, url, content=body, headers=headers)
                    seen.append(response.status_code)
                    assert response.status_code < 500, (url, body, response.text)
                    template = (
                        "/v1/proposals/{proposal_id}"
                        if re.match(r"^/v1/proposals/[^?]", url)
                        else "/v1/proposals"
                    )
                    assert response.status_code in documented(openapi, template, method), (
                        url,
                        response.status_code,
                        response.text,
                    )
                    if response.status_code >= 400:
                        assert set(response.json()) == {"error", "details"}

                check()

        await asyncio.to_thread(fuzz)

    assert len(seen) >= 80
    assert 422 in seen
