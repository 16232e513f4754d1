//! How a work item ended, in the terms every runtime's queue understands.
//!
//! Each runtime maps a [`Disposition`] to its own signal: on Cloud Run an HTTP status to the
//! Pub/Sub push (2xx acks; any other status is a nack, redelivered after the subscription's
//! backoff, and dead-lettered after its maximum attempts), on a Cloudflare queue `ack()` or
//! `retry({ delaySeconds })`. A runtime may keep a richer outcome of its own for its logs and
//! statuses (why it is retried: rate limited, a dependency down, out of time); what it tells the
//! queue is one of these three.

use std::time::Duration;

/// What the queue should do with the message that carried a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The work is durably done (and its fan-out accepted): acknowledge the message.
    Done,
    /// Not done, but it may succeed later: deliver it again, no sooner than `after`.
    Retry { after: Duration },
    /// It can never succeed (a malformed or forbidden message): stop retrying it, so it ends in
    /// the dead-letter queue with its body intact, and say why.
    Reject { reason: String },
}

impl Disposition {
    /// Whether the message is finished with (acknowledged), for a runtime whose queue only
    /// knows ack and retry: a rejected message is not acknowledged, so the queue's own
    /// attempt limit moves it to the dead-letter queue.
    pub fn acknowledges(&self) -> bool {
        matches!(self, Disposition::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_done_acknowledges() {
        assert!(Disposition::Done.acknowledges());
        assert!(!Disposition::Retry {
            after: Duration::from_secs(1)
        }
        .acknowledges());
        assert!(!Disposition::Reject { reason: "bad".into() }.acknowledges());
    }
}
