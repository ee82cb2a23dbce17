"""Schemathesis against the app's own OpenAPI document: no 5xx, and every answer is what the document says.

Every operation is fuzzed with valid and invalid input as a citizen and as an admin (`FUZZ_ROLES` adds the
operator and the scout), most path ids pointing at seeded rows; then the stateful run chains calls along the
document's links (declared ones, e.g. POST /sos -> /sos/{id}/cancel, and those schemathesis infers).
"""
import copy
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.errors import Flaky
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.world import clean_world, seed_world, served_spec

# `make test` runs 25 examples per operation; `make fuzz` 500 for every role, with schemathesis's coverage
# phase (boundary and near-miss values of every parameter) on top.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
ROLES = os.environ.get("FUZZ_ROLES", "citizen,admin").split(",")
COVERAGE = os.environ.get("FUZZ_COVERAGE", "0") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SETTINGS = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}


def load(spec: dict, *, stateful: bool):
    return schemathesis.openapi.from_dict(copy.deepcopy(spec), config=schemathesis.Config.from_dict({
        "generation": {"mode": "all", "database": "none", "with-security-parameters": False},
        "phases": {"coverage": {"enabled": COVERAGE}, "stateful": {"enabled": stateful}},
    }))


SPEC = served_spec()
schema = load(SPEC, stateful=False)
linked = load(SPEC, stateful=True)


@pytest.fixture(params=ROLES)
def world(request, app, db, redis_client):
    yield seed_world(app, db, role=request.param)
    clean_world(db)


@schema.parametrize()
@settings(max_examples=EXAMPLES, **SETTINGS)
def test_every_operation_answers_as_documented(app, world, case):
    world.prepare(case)
    case.call_and_validate(app=app, headers=world.headers, checks=CHECKS)


def test_sequences_of_calls_along_the_links_answer_as_documented(app, world):
    found, scenarios = [], []

    class Sequences(linked.as_state_machine()):
        def setup(self):
            scenarios.append(1)

        def before_call(self, case):
            world.prepare(case, swap_ids=False)  # ids come from the answers the links point into

        def get_call_kwargs(self, case):
            return {"app": app, "headers": world.headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            # Collected rather than raised: the rows each scenario starts from are the ones the last one left,
            # so Hypothesis could not replay a failing scenario to shrink it anyway.
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as failures:
                found.extend(f"{case.operation.label}: {f}" for f in failures.exceptions)

    for _attempt in range(25):
        try:
            Sequences.run(settings=settings(max_examples=EXAMPLES, stateful_step_count=8, **SETTINGS))
        except Flaky:
            # The database changed under Hypothesis's feet between scenarios (which links a response offers
            # depends on what earlier ones did), so it stops; like schemathesis's own runner, start again.
            pass
        if len(scenarios) >= EXAMPLES:
            break
    assert found == []
