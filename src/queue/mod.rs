//! Where work items run. [`local`]: in this process, the embedded default. (Pub/Sub comes with
//! the Cloud Run service.)

pub mod local;
pub mod progress;
