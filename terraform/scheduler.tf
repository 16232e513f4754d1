# Keeps the replica fresh after the bootstrap: every tick publishes to the `changes` topic, whose
# push subscription calls POST /work/changes. Each call reads one batch of _changes from the
# checkpoint in the bucket, publishes packument items, and advances the checkpoint with a
# generation-matched write, so overlapping ticks never both advance it. A failed tick is simply
# retried or superseded by the next one.
resource "google_cloud_scheduler_job" "changes" {
  name        = "${var.service_name}-changes"
  region      = var.region
  description = "Reads the upstream change feed into the replica (all-docs /work/changes)"
  schedule    = var.changes_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.work["changes"].id
    data       = base64encode("{}")
    attributes = {
      type = "changes"
    }
  }

  retry_config {
    retry_count = 0
  }
}
