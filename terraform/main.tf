# all-docs on Google Cloud: one Cloud Run service behind four Pub/Sub push subscriptions, and a
# bucket that is the replica. Cloud Scheduler ticks the `changes` topic to keep it fresh. docs/deploy.md walks through a deployment from an empty project.
#
# Files: identities.tf (the two service accounts), storage.tf (bucket), pubsub.tf (topics,
# subscriptions, the Pub/Sub service agent's grants), scheduler.tf (the change-feed tick), run.tf (the service, who may invoke it,
# the image repository), outputs.tf. Every grant is on one resource; nothing is project-wide.

data "google_project" "this" {
  project_id = var.project
}

locals {
  # Work type => topic name. The keys are the service's endpoints (/work/{type}).
  kinds = {
    "partition-set" = var.topic_partition_set
    "partition"     = var.topic_partition
    "packument"     = var.topic_packument
    "changes"       = var.topic_changes
  }

  # The topics the service publishes to: all but the change-feed ticks (Cloud Scheduler
  # publishes those).
  work_kinds = {
    "partition-set" = var.topic_partition_set
    "partition"     = var.topic_partition
    "packument"     = var.topic_packument
  }

  # Google's Pub/Sub service agent: it signs push tokens as the push account, and moves
  # messages to the dead-letter topics.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
