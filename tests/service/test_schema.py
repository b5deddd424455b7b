"""Schemathesis runs the app's own OpenAPI schema against it, over a real socket with tiny models: 0 server errors.

For every operation it sends schema-valid bodies (positive) and schema-breaking ones (negative), a bounded
number of each (derandomized, so a run is repeatable and stays well under a minute here), and checks:
no 5xx (a 504 only for a request that asked for a timeout under a second), every status code, content
type and body as documented, and every schema-breaking request refused with a 4xx. Not checked: that
every schema-valid request is accepted, because some rules no schema states (a filter's syntax, top_k >=
top_n, an id that is not there); those are refused with a 4xx whose message names the rule.
"""

from __future__ import annotations

import os
import shutil

import pytest

schemathesis = pytest.importorskip("schemathesis")  # the dev extra pins it

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from serving import serving  # noqa: E402

from bicross.search import SearchConfig  # noqa: E402
from bicross.service import ServiceSettings  # noqa: E402
from bicross.service.shadow import ShadowPipeline  # noqa: E402

# per operation and mode: 12 operations x 2 modes x 25 requests, ~30 s here; set more for a deeper local run
EXAMPLES = int(os.environ.get("BICROSS_SCHEMA_EXAMPLES", "25"))


class ServerError(AssertionError):
    """A 5xx that is not a requested timeout."""


def no_server_error(ctx, response, case) -> None:
    """5xx is a bug, except a 504 for a request that asked for a timeout shorter than any tiny-model call."""
    if response.status_code < 500:
        return
    timeout = case.body.get("timeout") if isinstance(case.body, dict) else None
    if response.status_code == 504 and isinstance(timeout, int | float) and timeout < 1.0:
        return
    raise ServerError(f"{case.operation.label} answered {response.status_code}: {response.text[:500]}\n"
                      f"reproduce: {case.as_curl_command()}")


# a body over max_items breaks the schema (maxItems) and is refused with 413 naming the limit, as documented
REFUSALS = {"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]}}}
CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_collection_template, tiny_cross_encoder_path):
    """A server that lets anonymous requests write too, and shadows every search, so schemathesis reaches that code."""
    folder = tmp_path_factory.mktemp("schema") / "tiny"
    shutil.copytree(tiny_collection_template, folder)
    options = ServiceSettings(reranker="tiny-cross", batch_wait_ms=0.0, allow_anonymous_writes=True,
                              max_items=16, max_query_chars=200, max_top_k=50, shadow_share=1.0,
                              shadow_pipeline=ShadowPipeline(SearchConfig(top_k=5, top_n=5), rerank=False))
    with serving(folder, options, tiny_cross_encoder_path) as served:
        yield served


def test_the_schema_states_the_servers_limits(api):
    components = api.client.get("/openapi.json").json()["components"]["schemas"]
    batch = components["SearchBatchRequest"]["properties"]
    assert batch["queries"]["maxItems"] == 16 and batch["queries"]["items"]["maxLength"] == 200
    assert {"type": "integer", "minimum": 1, "maximum": 50} in batch["top_k"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 16} in \
        components["EmbeddingsRequest"]["properties"]["input"]["anyOf"]


def test_schemathesis_finds_no_server_error_and_every_response_matches_the_schema(api):
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json", config=schemathesis.Config.from_dict(REFUSALS))
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def call(case) -> None:
                case.call_and_validate(checks=CHECKS, timeout=60)

            try:
                call()
            except Unsatisfiable:  # no way to break the schema of a route without parameters (GET /health)
                continue
            except BaseException as error:  # noqa: BLE001 - gathered, so one run reports every operation's failure
                if isinstance(error, KeyboardInterrupt | SystemExit):
                    raise
                failures.append(f"{operation.label} ({mode.value}): {error}")
    assert not failures, "\n\n".join(failures)
    metrics = api.client.get("/metrics").text
    assert "bicross_shadow_failed_total 0.0" in metrics and "bicross_shadow_runs_total 0.0" not in metrics
