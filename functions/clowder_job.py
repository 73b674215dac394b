"""CloudEvent function ``clowder_job``: a job from Clowder's extractor queue (delivered by a
RabbitmqSource), or the outcome of the transfer a job asked for, told back to Clowder."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.domain import clowder_jobs


@functions_framework.http
def clowder_job(request: Request) -> Response:
    return clowder_jobs.serve(request)
