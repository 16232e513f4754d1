# Per work type (local.kinds), the same layout `all-docs dev pubsub-setup` makes on an emulator:
#
#   topic {t}  --push subscription {t}-push-->  {service}/work/{type}
#       failed deliveries after max_delivery_attempts -> topic {t}-dead-letter
#       topic {t}-dead-letter --pull subscription {t}-dead-letter-pull (keeps the dead letters)

resource "google_pubsub_topic" "work" {
  #checkov:skip=CKV_GCP_83:Work items are public package names and revisions; Google-managed encryption is enough and a CMEK key would add a KMS dependency to every publish.
  for_each = local.kinds

  name = each.value
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Dead letters are work items (public package names); Google-managed encryption is enough, as for the work topics.
  for_each = local.kinds

  name = "${each.value}-dead-letter"
}

# Delivers each work item to the service, authenticated, with backoff; gives up into the
# dead-letter topic after max_delivery_attempts.
resource "google_pubsub_subscription" "push" {
  for_each = local.kinds

  name  = "${each.value}-push"
  topic = google_pubsub_topic.work[each.key].id

  # For push, the ack deadline is how long Pub/Sub waits for the HTTP answer: at least the
  # service's request timeout (variables.tf enforces it), so running work is never redelivered.
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.all_docs.uri}/work/${each.key}"

    # Pub/Sub signs each request with a Google OIDC token for the push account; Cloud Run checks
    # it against run.invoker, and the service checks issuer, audience and e-mail again.
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = var.push_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.min_backoff_seconds}s"
    maximum_backoff = "${var.max_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Never expire: a replica may sit idle for longer than the default 31 days between runs.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.agent_dead_letter,
    google_service_account_iam_member.agent_push_tokens,
  ]
}

# Keeps dead letters (a topic with no subscription drops its messages) for inspection and replay.
resource "google_pubsub_subscription" "dead_letter_pull" {
  for_each = local.kinds

  name                       = "${each.value}-dead-letter-pull"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_seconds}s"

  expiration_policy {
    ttl = ""
  }
}

# The service publishes the work it fans out (partition-set -> partition -> packument, and
# changes -> packument) to the three work topics (Cloud Scheduler, not the service, publishes
# the change ticks) ...
resource "google_pubsub_topic_iam_member" "run_publisher" {
  for_each = local.work_kinds

  topic  = google_pubsub_topic.work[each.key].name
  role   = "roles/pubsub.publisher"
  member = google_service_account.run.member
}

# ... and its readiness probe (/readyz) reads each work topic to prove Pub/Sub is reachable,
# which needs pubsub.topics.get (not in roles/pubsub.publisher).
resource "google_pubsub_topic_iam_member" "run_viewer" {
  for_each = local.work_kinds

  topic  = google_pubsub_topic.work[each.key].name
  role   = "roles/pubsub.viewer"
  member = google_service_account.run.member
}

# The Pub/Sub service agent moves undeliverable messages: it must publish to the dead-letter
# topics and subscribe (acknowledge) on the source subscriptions.
resource "google_pubsub_topic_iam_member" "agent_dead_letter" {
  for_each = local.kinds

  topic  = google_pubsub_topic.dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_push_subscriber" {
  for_each = local.kinds

  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# ... and it mints the push account's OIDC tokens.
resource "google_service_account_iam_member" "agent_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
