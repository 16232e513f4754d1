//! Where work items run. [`local`]: in this process, the embedded default. [`follow`]: the
//! change feed after the bootstrap, in this process. [`pubsub`]: publishing
//! to Pub/Sub topics for the Cloud Run service, and creating them on an emulator.

pub mod follow;
pub mod local;
pub mod progress;
pub mod pubsub;
