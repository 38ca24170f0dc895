"""CI provenance: which pipeline, job, pull request, ref and actor started a run.

Read from the variables GitHub Actions and GitLab CI set in every job, and only from
those: the job's environment holds secrets (tokens, deploy keys), so nothing is read by
pattern. Each value is a fixed, documented variable's, passed through the run's redaction
like every other tag. Outside CI, or with an unknown CI, no tag is set.

Tags (docs/collected-information.md):

- ``tracksdk.ci.provider``: ``github-actions`` or ``gitlab-ci``;
- ``tracksdk.ci.url``: the workflow run's page (GitHub), the pipeline's (GitLab);
- ``tracksdk.ci.job``: the job's name (GitHub: ``<workflow> / <job id>``);
- ``tracksdk.ci.job_url``: the job's page, where the CI gives it (GitLab);
- ``tracksdk.ci.pr``: the pull request or merge request number, in one;
- ``tracksdk.ci.ref``: the branch or tag (a pull request's source branch);
- ``tracksdk.ci.actor``: who started it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tracksdk._redact import strip_userinfo

__all__ = ["ci_tags"]

PREFIX = "tracksdk.ci."
_PULL_REF = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")


def ci_tags(environ: Mapping[str, str]) -> dict[str, str]:
    """The CI tags for a job with environment ``environ`` (empty outside a known CI)."""
    if environ.get("GITHUB_ACTIONS") == "true":
        found = _github(environ)
    elif environ.get("GITLAB_CI") == "true":
        found = _gitlab(environ)
    else:
        return {}
    # A URL with credentials in it (a self-hosted instance's) keeps its host only.
    return {
        PREFIX + key: strip_userinfo(value.strip(), remove=True)
        for key, value in found.items()
        if value and value.strip()
    }


def _github(env: Mapping[str, str]) -> dict[str, str]:
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repository, run_id = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_RUN_ID", "")
    url = f"{server}/{repository}/actions/runs/{run_id}" if repository and run_id else ""
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    if url and attempt.isdigit() and int(attempt) > 1:
        url += f"/attempts/{attempt}"  # a re-run has a page of its own
    workflow, job = env.get("GITHUB_WORKFLOW", ""), env.get("GITHUB_JOB", "")
    pull = _PULL_REF.match(env.get("GITHUB_REF", ""))
    return {
        "provider": "github-actions",
        "url": url,
        "job": " / ".join(part for part in (workflow, job) if part),
        "pr": pull.group(1) if pull else "",
        # A pull request's GITHUB_REF_NAME is "123/merge": its source branch says more.
        "ref": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME", ""),
        "actor": env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR", ""),
    }


def _gitlab(env: Mapping[str, str]) -> dict[str, str]:
    return {
        "provider": "gitlab-ci",
        "url": env.get("CI_PIPELINE_URL", ""),
        "job": env.get("CI_JOB_NAME", ""),
        "job_url": env.get("CI_JOB_URL", ""),
        "pr": env.get("CI_MERGE_REQUEST_IID", ""),
        "ref": env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME", ""),
        "actor": env.get("GITLAB_USER_LOGIN", ""),
    }
