//! How trailvault talks to the world: the AWS SDK clients behind the
//! pipeline's seams, the sled progress store, and the retry helper.
//! Every SDK error is classified into a [`trailvault_pipeline::SeamError`] in
//! one place ([`aws::classify`]).

pub mod aws;
pub mod connect;
pub mod events;
pub mod kms;
pub mod organizations;
pub mod partition;
pub mod public_keys;
pub mod rate_limit;
pub mod retry;
pub mod s3;
pub mod sessions;
pub mod sns;
pub mod sqs;
pub mod store;
