"""The README's quick start, through a client generated from the committed openapi.json.

Run by tests/tests/client.rs with the generated package on PYTHONPATH and BECKON_URL,
BECKON_TOKEN and BECKON_WEBHOOK_URL set. Prints what it saw as one JSON object.
"""

import json
import os
import sys
import time

from beckon_api_client import AuthenticatedClient
from beckon_api_client.api.dispatch import dispatch_lifecycle_event
from beckon_api_client.api.projects import create_project, get_project
from beckon_api_client.api.surveys import create_survey
from beckon_api_client.api.triggers import get_trigger
from beckon_api_client.api.webhooks import create_webhook
from beckon_api_client.models import (
    CreateSubscription,
    CreateSurvey,
    DispatchRequest,
    DispatchResponse,
    ErrorBody,
    ProjectInput,
    ProjectView,
    SurveyView,
    TriggerView,
)

client = AuthenticatedClient(base_url=os.environ["BECKON_URL"], token=os.environ["BECKON_TOKEN"])
seen = {}


def ok(response, status, model):
    """The parsed body of an answer with `status`, or exit saying what came instead."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(f"expected {status} {model.__name__}, got {response.status_code}: {response.content!r}")
    if not response.headers.get("x-request-id"):
        sys.exit("an answer without X-Request-Id")
    return response.parsed


with client as c:
    made = create_project.sync_detailed(client=c, body=ProjectInput(name="Quick start"))
    project = ok(made, 201, ProjectView)
    # The Location of a 201 reads the resource back.
    location = made.headers["location"]
    seen["project_location"] = location
    again = ok(get_project.sync_detailed(project.id, client=c), 200, ProjectView)
    assert again.id == project.id and location.endswith(str(project.id)), location

    survey = ok(
        create_survey.sync_detailed(
            project.id,
            client=c,
            body=CreateSurvey.from_dict(
                {
                    "name": "Why did your trial end?",
                    "status": "live",
                    "questions": [
                        {"id": "nps", "type": "nps", "title": "How likely are you to recommend us?"},
                        {"id": "why", "type": "mcq", "title": "Why?", "options": ["Price", "Features"]},
                    ],
                    "trigger": {"events": ["trial_expired"]},
                }
            ),
        ),
        201,
        SurveyView,
    )
    seen["survey_id"] = str(survey.id)

    webhook = create_webhook.sync_detailed(
        project.id,
        client=c,
        body=CreateSubscription.from_dict({"url": os.environ["BECKON_WEBHOOK_URL"]}),
    )
    if webhook.status_code != 201:
        sys.exit(f"webhook: {webhook.status_code} {webhook.content!r}")
    seen["webhook_secret_prefix"] = webhook.parsed.secret[:6]

    dispatched = ok(
        dispatch_lifecycle_event.sync_detailed(
            client=c,
            body=DispatchRequest.from_dict(
                {"project_id": str(project.id), "user_ref": "user_42", "event": "trial_expired"}
            ),
        ),
        200,
        DispatchResponse,
    )
    seen["trigger_id"] = str(dispatched.trigger_id)
    seen["magic_link_is_a_survey_page"] = "/surveys/" in dispatched.created_invitations[0].magic_link_url

    deadline = time.monotonic() + 30
    while True:
        trigger = ok(get_trigger.sync_detailed(dispatched.trigger_id, client=c), 200, TriggerView)
        if trigger.status.value == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    seen["trigger_status"] = trigger.status.value
    seen["sent"] = trigger.summary.sent

    # An error parses as the one error shape, naming its request.
    missing = get_trigger.sync_detailed(project.id, client=c)
    error = missing.parsed
    assert missing.status_code == 404 and isinstance(error, ErrorBody), missing.content
    assert error.request_id == missing.headers["x-request-id"], (error.request_id, missing.headers)
    seen["error_code"] = error.code
    seen["error_request_id"] = error.request_id

print(json.dumps(seen))
