# The replica: one object per entry, `v1/packument/{origin}/{hex(name)}` whose body is the
# packument as fetched (docs/deploy.md shows how to read it). Private, uniform access only.
resource "google_storage_bucket" "replica" {
  #checkov:skip=CKV_GCP_62:Access logs go to Cloud Audit Logs (Data Access logs for Cloud Storage); legacy bucket access logs would need a second bucket that is itself unlogged.
  name     = var.bucket
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = var.bucket_versioning
  }

  # Old generations of overwritten or deleted entries are kept a while, then deleted.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Documents above 8 MiB stream to a scratch object under tmp/ before a server-side copy puts
  # them under their name; the service deletes it, and this rule removes any a crash left.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["tmp/"]
    }
    action {
      type = "Delete"
    }
  }
}

# The service reads, lists, writes and deletes objects; it cannot change the bucket or its IAM.
resource "google_storage_bucket_iam_member" "run_objects" {
  bucket = google_storage_bucket.replica.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.run.member
}
