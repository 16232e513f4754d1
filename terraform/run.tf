# The service, who may invoke it, and where its image lives.
#
# This resource and ../service.yaml describe the same service: Terraform creates it (and owns
# everything around it), `gcloud run services replace service.yaml` rolls out new images. The
# two must agree on every setting, or each would undo the other: tests/deploy checks that they
# do (concurrency, timeout, CPU, memory, scaling, probes, ingress, audiences, env names and
# values). Only the image is left to gcloud (lifecycle.ignore_changes below).

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:The images hold the open-source binary only (no data, no secrets); Google-managed encryption is enough and a CMEK key would gate every pull on KMS.
  location      = var.region
  repository_id = var.service_name
  format        = "DOCKER"
  description   = "Images of the all-docs service."

  # A tag always names the same image: deploy a new tag, never move an old one.
  docker_config {
    immutable_tags = true
  }
}

resource "google_cloud_run_v2_service" "all_docs" {
  name                = var.service_name
  location            = var.region
  deletion_protection = var.deletion_protection

  # Only internal sources reach the service: Pub/Sub push from this project counts as internal
  # when it targets the run.app URL (as the push subscriptions do). Nothing on the internet can
  # reach it, and IAM (run.invoker for the push account only) applies on top.
  ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"

  # The push tokens' audience: a fixed value instead of the service URL, so the URL is not
  # needed before the service exists (the subscriptions need the URL, the service the audience).
  custom_audiences = [var.push_audience]

  template {
    service_account                  = google_service_account.run.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "${var.timeout_seconds}s"

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image
      args  = ["--log-format", "json"]

      ports {
        name           = "http1"
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU only while requests run: all work happens inside push requests.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project
      }
      env {
        name  = "ALL_DOCS_STORE"
        value = "gs://${google_storage_bucket.replica.name}"
      }
      env {
        name  = "ALL_DOCS_TOPIC_PARTITION_SET"
        value = google_pubsub_topic.work["partition-set"].name
      }
      env {
        name  = "ALL_DOCS_TOPIC_PARTITION"
        value = google_pubsub_topic.work["partition"].name
      }
      env {
        name  = "ALL_DOCS_TOPIC_PACKUMENT"
        value = google_pubsub_topic.work["packument"].name
      }
      env {
        name  = "ALL_DOCS_REPLICATE_ORIGIN"
        value = var.replicate_origin
      }
      env {
        name  = "ALL_DOCS_REGISTRY_ORIGIN"
        value = var.registry_origin
      }
      env {
        name  = "ALL_DOCS_PUSH_AUDIENCE"
        value = var.push_audience
      }
      env {
        name  = "ALL_DOCS_PUSH_SERVICE_ACCOUNT"
        value = google_service_account.push.email
      }
      env {
        name  = "ALL_DOCS_MAX_IN_FLIGHT"
        value = var.concurrency
      }
      env {
        name  = "ALL_DOCS_REQUEST_BUDGET"
        value = var.request_budget_seconds
      }
      env {
        name  = "ALL_DOCS_MAX_RPS"
        value = var.max_rps_per_instance
      }

      # Ready once the bucket and the topics answer (GET /readyz); up to 240 s for a cold start.
      startup_probe {
        period_seconds    = 10
        timeout_seconds   = 5
        failure_threshold = 24
        http_get {
          path = "/readyz"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }
  }

  lifecycle {
    # Rollouts change the image with gcloud (docs/deploy.md); Terraform sets only the first one.
    ignore_changes = [
      template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  # The readiness probe needs the bucket and the topics to be readable by the service account.
  depends_on = [
    google_storage_bucket_iam_member.run_objects,
    google_pubsub_topic_iam_member.run_publisher,
    google_pubsub_topic_iam_member.run_viewer,
  ]
}

# Only the push account may invoke the service: no allUsers, no allAuthenticatedUsers.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  project  = google_cloud_run_v2_service.all_docs.project
  location = google_cloud_run_v2_service.all_docs.location
  name     = google_cloud_run_v2_service.all_docs.name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}
