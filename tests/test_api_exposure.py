"""What the API gives away to whoever calls it: metric labels it lets callers grow, pages
another site may frame, and whether another clinic's follow-up can be told from a missing
one. Served on a real loopback port with Temporal unreachable: none of this needs it."""

from __future__ import annotations

import re

from api.methods import HTTP_METHODS
from tests.fixtures.api import CLINIC_KEY, METRICS_TOKEN, bearer
from workflows.models import followup_workflow_id


async def test_a_made_up_method_is_counted_as_other(offline_api):
    http = offline_api.http
    for method in ("+15555550177", "BREW", "get"):
        await http.request(method, "/v1/departures")
    await http.get("/no/such/page/+15555550123")

    metrics = (await http.get("/metrics", headers=bearer(METRICS_TOKEN))).text

    requests = [line for line in metrics.splitlines()
                if line.startswith("aftercare_http_request")]
    methods = set(re.findall(r'method="([^"]*)"', "\n".join(requests)))
    statuses = set(re.findall(r'status="([^"]*)"', "\n".join(requests)))
    routes = set(re.findall(r'route="([^"]*)"', "\n".join(requests)))
    # The registry is the process's: other tests' requests may be in it too.
    assert methods <= {m.upper() for m in HTTP_METHODS} | {"other"} and "other" in methods
    assert statuses <= {"2xx", "3xx", "4xx", "5xx"}
    assert "+1555" not in metrics and "BREW" not in metrics
    assert {"/v1/departures", "unmatched"} <= routes
    assert not [route for route in routes if route != "unmatched" and "+" in route]


async def test_every_html_page_refuses_to_be_framed(offline_api):
    http = offline_api.http
    pages = {
        "link page": await http.get("/r/not-a-real-token"),
        "link button": await http.post("/r/not-a-real-token"),
        "console": await http.get("/console/sign-in"),
        "API docs": await http.get("/docs"),
    }
    for name, response in pages.items():
        assert response.headers["content-type"].startswith("text/html"), name
        assert response.headers["x-frame-options"] == "DENY", name
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], name


async def test_another_clinics_followup_is_refused_without_asking_temporal(offline_api):
    """Temporal is unreachable here: an id the clinic may own needs it (503: the follow-up
    is in no store yet, so Temporal is asked whether it is being set up), one that is
    another clinic's is answered 404 at once, exactly like a missing one would be."""
    http = offline_api.http
    theirs = followup_workflow_id("clinic-7", "s-1")
    lookalike = followup_workflow_id("clinic-42-x", "s-1")  # starts like clinic-42's ids
    ours = followup_workflow_id("clinic-42", "s-1")

    for other in (theirs, lookalike, "followup-nobody-s-1"):
        read = await http.get(f"/v1/followups/{other}", headers=bearer(CLINIC_KEY))
        acked = await http.post(f"/v1/followups/{other}/acknowledge",
                                json={"staff_id": "t-12"}, headers=bearer(CLINIC_KEY))
        assert (read.status_code, acked.status_code) == (404, 404), other
        assert read.json()["detail"] == (
            f"workflow_id: clinic 'clinic-42' has no follow-up {other!r}")
    not_an_id = await http.get("/v1/followups/not-a-followup", headers=bearer(CLINIC_KEY))
    assert not_an_id.status_code == 422
    assert "workflow_id: String should match pattern" in not_an_id.json()["detail"]
    mine = await http.get(f"/v1/followups/{ours}", headers=bearer(CLINIC_KEY))
    assert mine.status_code == 503
