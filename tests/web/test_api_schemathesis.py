"""Schemathesis against /api/v1/openapi.json, on SQLite and PostgreSQL: for whatever the
document allows, the API answers without a 5xx, with a documented status code and the
documented response shape.

The operations are run one after another inside one test per database (schemathesis' pytest
fixture loader does not run on this pytest); each gets `MAX_EXAMPLES` generated requests.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.store import Store
from bridge.vocabulary import SCOPES
from tests.web.seed import seed, token

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

MAX_EXAMPLES = 25  # per operation and generation mode, on each database
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_the_api_never_answers_5xx(store: Store, app_factory: Callable[..., Flask]) -> None:
    seed(store)
    app = app_factory(store)
    secret = token(store, list(SCOPES))
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    seen: Counter[int] = Counter()
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {secret}"})
            seen[response.status_code] += 1
            if case.meta.generation.mode is GenerationMode.POSITIVE:
                case.validate_response(response, checks=CHECKS)
            else:  # invalid input: whatever the answer, not a 5xx
                case.validate_response(response, checks=[not_a_server_error])

        run()
    # Both valid and invalid requests got through to the views (not all refused up front).
    assert seen[400] and sum(n for code, n in seen.items() if code < 300), seen
    print(dict(seen))
