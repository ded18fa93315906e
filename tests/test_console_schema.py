"""The console's JSON API fuzzed from its own OpenAPI schema (schemathesis): no input makes it fail with a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

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

        fuzz()
    assert turn["n"] > 100
    assert failures == []
    assert seen.get(200) and seen.get(403) and seen.get(404), seen  # it reached real handlers, not only the door
