"""CI provenance (issue 12): runs started in GitHub Actions or GitLab CI carry the
pipeline's URL, the job, the pull request, the ref and the actor as ``tracksdk.ci.*``
tags, read back from the local store; the job's secrets never appear."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_fixtures import all_runs, local_client

from tracksdk import tracked

# What GitHub Actions sets in a pull request's job (docs.github.com, "Variables"),
# with the secrets a job typically has beside them.
GITHUB_PR = {
    "CI": "true",
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/churn",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_WORKFLOW": "train",
    "GITHUB_JOB": "fit",
    "GITHUB_REF": "refs/pull/42/merge",
    "GITHUB_REF_NAME": "42/merge",
    "GITHUB_HEAD_REF": "feature/better-trees",
    "GITHUB_ACTOR": "alice",
    "GITHUB_EVENT_NAME": "pull_request",
    "GITHUB_TOKEN": "ghs_0123456789abcdefghijklmnopqrstuvwxyzAB",
    "ACTIONS_RUNTIME_TOKEN": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-runtime",
}

GITLAB_MR = {
    "CI": "true",
    "GITLAB_CI": "true",
    "CI_PIPELINE_URL": "https://gitlab.example.com/ml/churn/-/pipelines/777",
    "CI_JOB_NAME": "train:fit",
    "CI_JOB_URL": "https://gitlab.example.com/ml/churn/-/jobs/31337",
    "CI_MERGE_REQUEST_IID": "17",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "mr-branch",
    "CI_COMMIT_REF_NAME": "mr-branch",
    "GITLAB_USER_LOGIN": "bob",
    "CI_JOB_TOKEN": "glcbt-64_secretjobtoken0123456789",
    "CI_REGISTRY_PASSWORD": "registry-password-0123",
}


def ci_tags(project: Path) -> dict[str, str]:
    [run] = all_runs(project)
    return {k: v for k, v in run.data.tags.items() if k.startswith("tracksdk.ci.")}


def secrets_nowhere(project: Path, secrets: list[str]) -> None:
    """No secret in any tag or param of the run, nor in its artifacts' text."""
    [run] = all_runs(project)
    client = local_client(project)
    values = [*run.data.tags.values(), *run.data.params.values()]
    folder = Path(client.download_artifacts(run.info.run_id, "", str(project / "dl")))
    values += [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    for secret in secrets:
        assert not any(secret in value for value in values), secret


def test_a_github_actions_pull_request(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GITHUB_PR.items():
        monkeypatch.setenv(name, value)
    with tracked(experiment="ci") as run:
        run.log_metric("auc", 0.9)
    assert ci_tags(project) == {
        "tracksdk.ci.provider": "github-actions",
        "tracksdk.ci.url": "https://github.com/acme/churn/actions/runs/9876543210/attempts/2",
        "tracksdk.ci.job": "train / fit",
        "tracksdk.ci.pr": "42",
        "tracksdk.ci.ref": "feature/better-trees",
        "tracksdk.ci.actor": "alice",
    }
    secrets_nowhere(project, [GITHUB_PR["GITHUB_TOKEN"], GITHUB_PR["ACTIONS_RUNTIME_TOKEN"]])


def test_a_github_actions_push_to_main(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    push = {k: v for k, v in GITHUB_PR.items() if k not in ("GITHUB_HEAD_REF",)}
    push.update(GITHUB_REF="refs/heads/main", GITHUB_REF_NAME="main", GITHUB_RUN_ATTEMPT="1")
    push.update(GITHUB_EVENT_NAME="push", GITHUB_SERVER_URL="https://ci:hunter2@ghe.acme.io")
    for name, value in push.items():
        monkeypatch.setenv(name, value)
    with tracked(experiment="ci"):
        pass
    tags = ci_tags(project)
    assert "tracksdk.ci.pr" not in tags
    assert tags["tracksdk.ci.ref"] == "main"
    # A server URL with credentials in it keeps only its address.
    assert tags["tracksdk.ci.url"] == "https://ghe.acme.io/acme/churn/actions/runs/9876543210"


def test_a_gitlab_merge_request(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GITLAB_MR.items():
        monkeypatch.setenv(name, value)

    @tracked(experiment="ci")
    def train(lr: float = 0.1) -> None:
        pass

    train()
    assert ci_tags(project) == {
        "tracksdk.ci.provider": "gitlab-ci",
        "tracksdk.ci.url": GITLAB_MR["CI_PIPELINE_URL"],
        "tracksdk.ci.job": "train:fit",
        "tracksdk.ci.job_url": GITLAB_MR["CI_JOB_URL"],
        "tracksdk.ci.pr": "17",
        "tracksdk.ci.ref": "mr-branch",
        "tracksdk.ci.actor": "bob",
    }
    secrets_nowhere(project, [GITLAB_MR["CI_JOB_TOKEN"], GITLAB_MR["CI_REGISTRY_PASSWORD"]])


def test_outside_ci_or_switched_off_no_tag(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")  # a CI tracksdk does not know: nothing guessed
    with tracked(experiment="ci"):
        pass
    assert ci_tags(project) == {}
    for name, value in GITHUB_PR.items():
        monkeypatch.setenv(name, value)
    with tracked(experiment="off", settings={"capture": {"ci": False}}):
        pass
    assert all(
        not key.startswith("tracksdk.ci.") for run in all_runs(project) for key in run.data.tags
    )
