//! Lectern nodes joined through Redis.
//!
//! # Layout
//! - `link.rs`: [`RedisLink`], the node's connection to Redis: one subscriber connection
//!   for every channel the node listens on (sharded pub/sub), a publisher queue, and a
//!   command connection for shared counters and caches. Redis may be down at any time; the
//!   link reconnects by itself and says when it did.
//! - `resp.rs`: the little of the Redis protocol the subscriber reads.
//! - `fanout.rs`: [`RedisFanout`], the `lectern_collab::Fanout` seam over the link.
//! - `metrics.rs`: [`ClusterMetrics`].
//!
//! What travels besides documents (access changes, sign-outs...) is the server's business:
//! it publishes its own typed events on a channel of the link.

mod fanout;
mod link;
mod metrics;
mod resp;

pub use fanout::RedisFanout;
pub use link::{ChannelGuard, Deliver, LinkError, RedisLink};
pub use metrics::ClusterMetrics;
