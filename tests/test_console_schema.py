"""The console's JSON API fuzzed from its own OpenAPI schema (schemathesis): no input makes it fail with a 5xx,
and every answer (status, content type, body) is one the schema describes."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from gateway.console import create_app

from support.console_seed import ingest_alarm, init

ROLES = {"olivia": "operator", "sam": "supervisor", "aud": "auditor", "adam": "admin"}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    data = init(tmp_path_factory.mktemp("schema") / "gw")
    ingest_alarm(data)
    app = create_app(data, "schema-secret-0123456789", secure_cookies=False)
    yield app
    app.state.store.close()


def test_no_generated_request_makes_the_api_fail(console):
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", console)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 12
    turn = {"n": 0}
    failures = []
    seen = {}

    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            # Each case runs as the next role in turn, with a fresh session (a fuzzed logout ends only its own).
            user = list(ROLES)[turn["n"] % len(ROLES)]
            turn["n"] += 1
            sid, session = console.state.sessions.create(user, ROLES[user])
            response = case.call(cookies={"vc_session": sid}, headers={"X-CSRF-Token": session.csrf})
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} as {user} -> {response.status_code}: "
                                f"{response.text[:300]}")
                return
            try:
                case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                         response_schema_conformance])
            except Exception as exc:  # schemathesis's FailureGroup: the answer does not match the schema
                failures.append(f"{case.method} {case.formatted_path} as {user} -> {response.status_code}: "
                                f"{str(exc)[:500]}")

        fuzz()
    assert turn["n"] > 100
    assert failures == []
    assert seen.get(200) and seen.get(403) and seen.get(404), seen  # it reached real handlers, not only the door


def test_every_answer_in_the_schema_has_a_real_model(console):
    spec = console.openapi()
    empty = [f"{method.upper()} {path} {code} {kind}"
             for path, ops in spec["paths"].items() for method, op in ops.items()
             for code, answer in op["responses"].items() for kind, body in answer.get("content", {}).items()
             if not body.get("schema")]
    assert empty == []
    alarm = spec["components"]["schemas"]["AlarmDetail"]["properties"]
    assert {"handling", "photos", "holds"} <= set(alarm)
    assert spec["paths"]["/api/alarms/{device}/{alarm_id}/photos/{image_id}"]["get"]["responses"]["200"]["content"] \
        == {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}


def test_the_schema_says_which_routes_an_api_token_may_call(console):
    spec = console.openapi()
    assert set(spec["components"]["securitySchemes"]) == {"session", "apiToken"}
    by_token = sorted(f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m, op in ops.items()
                      if {"apiToken": []} in op.get("security", []))
    assert by_token == ["GET /api/alarms", "GET /api/alarms/{device}/{alarm_id}",
                        "GET /api/alarms/{device}/{alarm_id}/photos/{image_id}"]
