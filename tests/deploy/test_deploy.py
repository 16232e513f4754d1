"""The deployment files meet issue 7, and each check notices when they stop doing so.

`test_check_passes` runs every check of deploylib on the real tree. `test_mutation_is_caught`
applies one realistic mistake to a copy of the files and asserts that the check responsible
for it reports a problem that says what is wrong.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

import deploylib
from conftest import ROOT


@pytest.mark.parametrize("name", list(deploylib.CHECKS))
def test_check_passes(deployment: deploylib.Deployment, name: str) -> None:
    problems = deploylib.CHECKS[name](deployment)
    assert problems == [], "\n".join(problems)


def test_terraform_has_what_the_issue_lists(deployment: deploylib.Deployment) -> None:
    tf = deployment.tf
    for name in ("project", "region", "image", "bucket", "replicate_origin", "registry_origin"):
        assert name in tf.variables, f"variable {name}"
        assert "default" not in tf.variables[name], f"variable {name} must have no default"
    outputs = {k for doc in tf.files.values() for block in doc.get("output", []) for k in block}
    assert {"service_url", "topics", "bucket"} <= outputs
    assert {t.body["name"] for t in tf.of_type("google_pubsub_topic")} == {
        "partition-set", "partition", "packument", "changes",
        "partition-set-dead-letter", "partition-dead-letter", "packument-dead-letter", "changes-dead-letter",
    }
    assert {s.body["name"] for s in tf.of_type("google_pubsub_subscription")} == {
        "partition-set-push", "partition-push", "packument-push", "changes-push",
        "partition-set-dead-letter-pull", "partition-dead-letter-pull", "packument-dead-letter-pull",
        "changes-dead-letter-pull",
    }
    for s in deployment.push_subscriptions():
        kind = s.key
        assert str(deploylib.block(s.body, "push_config")["push_endpoint"]).endswith(f"/work/{kind}")
    # The change-feed tick: a scheduler job publishing to the `changes` topic.
    [job] = tf.of_type("google_cloud_scheduler_job")
    target = deploylib.block(job.body, "pubsub_target")
    assert 'google_pubsub_topic.work["changes"].id' in str(target["topic_name"]), target
    provider = tf.files["versions.tf"]["terraform"][0]["required_providers"][0]["google"]
    assert provider["version"].startswith("~> 6")


def test_checkov_skips_are_justified(root) -> None:
    """Every inline checkov skip carries a reason (`ID:reason`), in Terraform and the Dockerfile."""
    skips = []
    for path in [*sorted((root / "terraform").glob("*.tf")), root / "Dockerfile"]:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                m = re.search(r"checkov:skip=([A-Z0-9_]+)\s*:\s*(.+)", line)
                assert m and len(m.group(2)) > 30, f"{path.name}: skip without a real reason: {line.strip()}"
                skips.append(m.group(1))
    assert skips, "expected the documented skips (CKV_GCP_62, CKV_GCP_83, CKV_GCP_84, CKV_DOCKER_2)"
    config = yaml.safe_load((root / ".checkov.yaml").read_text())
    assert not config.get("skip-check"), ".checkov.yaml must not skip checks: skip inline, with a reason"
    assert config.get("skip-download") is True


def test_service_yaml_renders(root, tmp_path) -> None:
    """envsubst with the variables docs/deploy.md names fills every placeholder."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PROJECT_ID": "my-project",
        "IMAGE": "europe-west1-docker.pkg.dev/my-project/all-docs/all-docs:v1",
        "BUCKET": "my-project-all-docs",
        "REPLICATE_ORIGIN": "https://replicate.example.com",
        "REGISTRY_ORIGIN": "https://registry.example.com",
    }
    names = " ".join(f"${n}" for n in sorted(deploylib.PLACEHOLDERS))
    try:
        out = subprocess.run(["envsubst", names], input=(root / "service.yaml").read_text(), env=env,
                             capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        pytest.skip("envsubst (gettext-base) is not installed")
    assert not re.search(r"\$\{\w+\}", out), "a placeholder is left"
    rendered = yaml.safe_load(out)
    spec = rendered["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "all-docs-run@my-project.iam.gserviceaccount.com"
    env_out = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env_out["ALL_DOCS_STORE"] == "gs://my-project-all-docs"
    assert env_out["GOOGLE_CLOUD_PROJECT"] == "my-project"


# (id, file, old, new, check, what the problem must mention)
MUTATIONS = [
    # Push subscriptions.
    ("push-without-oidc", "terraform/pubsub.tf",
     """    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = var.push_audience
    }
""", "", "check_push_subscriptions", "oidc_token"),
    ("push-without-audience", "terraform/pubsub.tf",
     "      audience              = var.push_audience\n", "", "check_push_subscriptions", "audience"),
    ("push-without-retry", "terraform/pubsub.tf",
     """  retry_policy {
    minimum_backoff = "${var.min_backoff_seconds}s"
    maximum_backoff = "${var.max_backoff_seconds}s"
  }
""", "", "check_push_subscriptions", "retry_policy"),
    ("push-without-dead-letter", "terraform/pubsub.tf",
     """  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }
""", "", "check_push_subscriptions", "dead_letter_policy"),
    ("too-many-attempts", "terraform/variables.tf",
     """rate limiting does not use these up."
  type        = number
  default     = 10
""", """rate limiting does not use these up."
  type        = number
  default     = 200
""", "check_push_subscriptions", "max_delivery_attempts"),
    ("ack-deadline-below-timeout", "terraform/variables.tf",
     """  type        = number
  default     = 600

  validation {
    condition     = var.ack_deadline_seconds""", """  type        = number
  default     = 120

  validation {
    condition     = var.ack_deadline_seconds""", "check_push_subscriptions", "shorter than the Cloud Run timeout"),
    ("push-without-retention", "terraform/pubsub.tf",
     """  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
""", "  ack_deadline_seconds = var.ack_deadline_seconds\n", "check_push_subscriptions", "message_retention_duration"),
    ("push-subscription-expires", "terraform/pubsub.tf",
     """  # Never expire: a replica may sit idle for longer than the default 31 days between runs.
  expiration_policy {
    ttl = ""
  }
""", "", "check_push_subscriptions", "expiration_policy"),
    ("push-to-wrong-endpoint", "terraform/pubsub.tf",
     '/work/${each.key}"', '/${each.key}"', "check_topics", "/work/"),
    ("push-renamed", "terraform/pubsub.tf",
     'name  = "${each.value}-push"', 'name  = "${each.value}-sub"', "check_push_subscriptions", "-push"),
    ("no-packument-topic", "terraform/main.tf",
     '    "packument"     = var.topic_packument\n    "changes"       = var.topic_changes\n',
     '    "changes"       = var.topic_changes\n', "check_topics", "packument"),
    # Dead letters.
    ("dead-letter-without-pull", "terraform/pubsub.tf",
     'resource "google_pubsub_subscription" "dead_letter_pull" {\n  for_each = local.kinds\n',
     'resource "google_pubsub_subscription" "dead_letter_pull" {\n  for_each = {}\n',
     "check_dead_letters", "no pull subscription"),
    ("dead-letter-pull-renamed", "terraform/pubsub.tf",
     '"${each.value}-dead-letter-pull"', '"${each.value}-dlq"', "check_dead_letters", "-dead-letter-pull"),
    ("dead-letters-kept-one-hour", "terraform/variables.tf",
     "default     = 2678400", "default     = 3600", "check_dead_letters", "less than 7 days"),
    # The Pub/Sub service agent.
    ("agent-cannot-publish-dead-letters", "terraform/pubsub.tf",
     """  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
""", """  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.viewer"
""", "check_pubsub_agent", "publisher"),
    ("agent-cannot-ack", "terraform/pubsub.tf",
     '  role         = "roles/pubsub.subscriber"\n', '  role         = "roles/pubsub.viewer"\n',
     "check_pubsub_agent", "subscriber"),
    ("agent-cannot-mint-tokens", "terraform/pubsub.tf",
     '  role               = "roles/iam.serviceAccountTokenCreator"\n', '  role               = "roles/iam.serviceAccountUser"\n',
     "check_pubsub_agent", "serviceAccountTokenCreator"),
    # Public access and IAM.
    ("invoker-all-users", "terraform/run.tf",
     """  role     = "roles/run.invoker"
  member   = google_service_account.push.member""", """  role     = "roles/run.invoker"
  member   = "allUsers\"""", "check_no_public_members", "allUsers"),
    ("invoker-all-users-is-not-the-push-account", "terraform/run.tf",
     """  role     = "roles/run.invoker"
  member   = google_service_account.push.member""", """  role     = "roles/run.invoker"
  member   = "allUsers\"""", "check_invoker", "allUsers"),
    ("extra-invoker-all-authenticated", "terraform/run.tf",
     "# Only the push account may invoke the service", """resource "google_cloud_run_v2_service_iam_member" "everyone" {
  location = var.region
  name     = google_cloud_run_v2_service.all_docs.name
  role     = "roles/run.invoker"
  member   = "allAuthenticatedUsers"
}

# Only the push account may invoke the service""", "check_no_public_members", "allAuthenticatedUsers"),
    ("bucket-reader-all-users", "terraform/storage.tf",
     "# The service reads, lists", """resource "google_storage_bucket_iam_member" "public" {
  bucket = google_storage_bucket.replica.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

# The service reads, lists""", "check_no_public_members", "allUsers"),
    ("invoker-is-the-service-account", "terraform/run.tf",
     """  role     = "roles/run.invoker"
  member   = google_service_account.push.member""", """  role     = "roles/run.invoker"
  member   = google_service_account.run.member""", "check_invoker", "only the push account"),
    ("project-wide-grant", "terraform/identities.tf",
     "# The identity Pub/Sub signs push requests as.", """resource "google_project_iam_member" "run_storage" {
  project = var.project
  role    = "roles/storage.admin"
  member  = google_service_account.run.member
}

# The identity Pub/Sub signs push requests as.""", "check_no_project_iam", "google_project_iam_member"),
    ("service-account-bucket-admin", "terraform/storage.tf",
     '  role   = "roles/storage.objectAdmin"\n', '  role   = "roles/storage.admin"\n',
     "check_service_account_grants", "storage.admin"),
    ("service-account-cannot-publish", "terraform/pubsub.tf",
     """  topic  = google_pubsub_topic.work[each.key].name
  role   = "roles/pubsub.publisher"
""", """  topic  = google_pubsub_topic.work[each.key].name
  role   = "roles/pubsub.subscriber"
""", "check_service_account_grants", "publisher"),
    # The bucket.
    ("bucket-fine-grained-acls", "terraform/storage.tf",
     "uniform_bucket_level_access = true", "uniform_bucket_level_access = false", "check_bucket", "uniform_bucket_level_access"),
    ("bucket-pap-inherited", "terraform/storage.tf",
     'public_access_prevention    = "enforced"', 'public_access_prevention    = "inherited"', "check_bucket", "public_access_prevention"),
    ("bucket-keeps-old-versions-forever", "terraform/storage.tf",
     "      days_since_noncurrent_time = var.noncurrent_version_days\n", "", "check_bucket", "noncurrent"),
    ("bucket-keeps-scratch-objects", "terraform/storage.tf",
     '      matches_prefix = ["tmp/"]\n', "", "check_bucket", "tmp/"),
    # The Cloud Run service.
    ("service-public-ingress", "terraform/run.tf",
     'ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"', 'ingress = "INGRESS_TRAFFIC_ALL"', "check_run_service", "INGRESS_TRAFFIC_INTERNAL_ONLY"),
    ("service-default-identity", "terraform/run.tf",
     "    service_account                  = google_service_account.run.email\n", "", "check_run_service", "service_account"),
    ("service-runs-as-push-account", "terraform/run.tf",
     "    service_account                  = google_service_account.run.email\n",
     "    service_account                  = google_service_account.push.email\n", "check_run_service", "push account"),
    ("service-without-custom-audience", "terraform/run.tf",
     "  custom_audiences = [var.push_audience]\n", "", "check_run_service", "custom audience"),
    ("service-without-startup-probe-on-readyz", "terraform/run.tf",
     'path = "/readyz"', 'path = "/"', "check_run_service", "/readyz"),
    ("service-skips-push-auth", "terraform/run.tf",
     """      env {
        name  = "ALL_DOCS_MAX_RPS\"""", """      env {
        name  = "ALL_DOCS_INSECURE_SKIP_PUSH_AUTH"
        value = "true"
      }
      env {
        name  = "ALL_DOCS_MAX_RPS\"""", "check_run_service", "ALL_DOCS_INSECURE_SKIP_PUSH_AUTH"),
    ("service-env-typo", "terraform/run.tf",
     'name  = "ALL_DOCS_REGISTRY_ORIGIN"', 'name  = "ALL_DOCS_REGISTRY"', "check_run_service", "ALL_DOCS_REGISTRY"),
    ("too-many-instances-for-the-rate-budget", "terraform/variables.tf",
     """  type        = number
  default     = 4
""", """  type        = number
  default     = 10
""", "check_run_service", "upstream budget"),
    # service.yaml on its own, and against Terraform.
    ("yaml-public-ingress", "service.yaml",
     "run.googleapis.com/ingress: internal", "run.googleapis.com/ingress: all", "check_service_yaml", "ingress"),
    ("yaml-without-service-account", "service.yaml",
     "      serviceAccountName: all-docs-run@${PROJECT_ID}.iam.gserviceaccount.com\n", "", "check_service_yaml", "serviceAccountName"),
    ("yaml-liveness-on-readyz", "service.yaml",
     "              path: /healthz", "              path: /readyz", "check_service_yaml", "/healthz"),
    ("yaml-unknown-placeholder", "service.yaml",
     "        - image: ${IMAGE}", "        - image: ${REGION}-docker.pkg.dev/x/y/z:1", "check_service_yaml", "REGION"),
    ("yaml-max-scale-over-budget", "service.yaml",
     'autoscaling.knative.dev/maxScale: "4"', 'autoscaling.knative.dev/maxScale: "10"', "check_service_yaml", "upstream budget"),
    ("yaml-in-flight-not-concurrency", "service.yaml",
     """            - name: ALL_DOCS_MAX_IN_FLIGHT
              value: "100\"""", """            - name: ALL_DOCS_MAX_IN_FLIGHT
              value: "1000\"""", "check_service_yaml", "ALL_DOCS_MAX_IN_FLIGHT"),
    ("yaml-env-not-read-by-service", "service.yaml",
     "            - name: ALL_DOCS_MAX_RPS\n", "            - name: ALL_DOCS_RATE\n", "check_service_yaml", "not read by the service"),
    ("yaml-timeout-differs", "service.yaml",
     "      timeoutSeconds: 300", "      timeoutSeconds: 600", "check_agreement", "request timeout"),
    ("yaml-concurrency-differs", "service.yaml",
     "      containerConcurrency: 100", "      containerConcurrency: 80", "check_agreement", "concurrency"),
    ("yaml-cpu-differs", "service.yaml",
     '              cpu: "2"', '              cpu: "1"', "check_agreement", "cpu"),
    ("yaml-memory-differs", "service.yaml",
     "              memory: 2Gi", "              memory: 4Gi", "check_agreement", "memory"),
    ("yaml-env-missing", "service.yaml",
     """            - name: ALL_DOCS_MAX_RPS
              value: "20"
""", "", "check_agreement", "ALL_DOCS_MAX_RPS"),
    ("terraform-env-renamed", "terraform/run.tf",
     'name  = "ALL_DOCS_REGISTRY_ORIGIN"', 'name  = "ALL_DOCS_REGISTRY"', "check_agreement", "env names differ"),
    ("terraform-timeout-differs", "terraform/variables.tf",
     """  type        = number
  default     = 300
""", """  type        = number
  default     = 360
""", "check_agreement", "request timeout"),
    ("yaml-audience-differs", "service.yaml",
     "              value: https://all-docs.invalid/push", "              value: https://other.invalid/push",
     "check_agreement", "ALL_DOCS_PUSH_AUDIENCE"),
    ("yaml-topic-differs", "service.yaml",
     "              value: packument\n", "              value: packuments\n", "check_agreement", "ALL_DOCS_TOPIC_PACKUMENT"),
    ("yaml-probe-period-differs", "service.yaml",
     "            periodSeconds: 30", "            periodSeconds: 60", "check_agreement", "livenessProbe period"),
    ("yaml-push-account-differs", "service.yaml",
     "value: all-docs-push@${PROJECT_ID}", "value: all-docs-run@${PROJECT_ID}", "check_agreement", "ALL_DOCS_PUSH_SERVICE_ACCOUNT"),
    # The image.
    ("image-unlocked-build", "Dockerfile",
     "RUN cargo build --release --locked --bin all-docs", "RUN cargo build --release --bin all-docs", "check_dockerfile", "--locked"),
    ("image-runs-on-rust", "Dockerfile",
     "FROM gcr.io/distroless/cc-debian12:nonroot", "FROM rust:1.95-bookworm", "check_dockerfile", "not minimal"),
    ("image-runs-as-root", "Dockerfile", "USER 65532:65532", "USER root", "check_dockerfile", "non-root USER"),
    ("image-copies-sources", "Dockerfile",
     "COPY --from=builder /all-docs /all-docs", "COPY --from=builder /all-docs /all-docs\nCOPY src /src", "check_dockerfile", "build context"),
    ("image-without-dependency-layer", "Dockerfile",
     "COPY Cargo.toml Cargo.lock ./", "COPY . .", "check_dockerfile", "Cargo.lock"),
    ("image-no-expose", "Dockerfile", "EXPOSE 8080\n", "", "check_dockerfile", "EXPOSE 8080"),
    ("image-entrypoint-not-serve", "Dockerfile",
     'ENTRYPOINT ["/all-docs", "serve"]', 'ENTRYPOINT ["/all-docs"]', "check_dockerfile", "ENTRYPOINT"),
    ("dockerignore-sends-everything", ".dockerignore", "!src/\n", "!src/\n!target/\n", "check_dockerignore", "target"),
    # Hosts and docs.
    ("real-looking-origin", "terraform/terraform.tfvars.example",
     'replicate_origin = "https://replicate.example.com"', 'replicate_origin = "https://replicate.upstream.org"',
     "check_hosts", "replicate.upstream.org"),
    ("docs-bad-work-item", "docs/deploy.md",
     '"payload":{"pivots":[null,', '"payload":{"pivot":[null,', "check_docs", "pivots"),
    ("docs-wrong-hex", "docs/deploy.md",
     "# 4074797065732f6e6f6465", "# 4074797065732f6e6f64", "check_docs", "hex"),
]


@pytest.mark.parametrize("mid,rel,old,new,check,expect", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(mutated, mid, rel, old, new, check, expect) -> None:
    copy = mutated((rel, old, new))
    d = deploylib.Deployment.load(copy, src_root=ROOT)
    problems = deploylib.CHECKS[check](d)
    assert problems, f"{check} found nothing wrong after mutation {mid}"
    assert any(expect in p for p in problems), f"{check} after {mid} reported:\n" + "\n".join(problems)
