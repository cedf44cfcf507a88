//! The narrow traits through which the stages reach the world, one per file.
//! `infra` implements them with the AWS SDK and redb; [`crate::testsuite`]
//! implements them in memory so every stage is testable without a network,
//! and its conformance suite holds every implementation to the same rules.

mod accounts;
mod archive;
mod clock;
mod connector;
mod events;
mod keys;
mod notifier;
mod queue;
mod source;
mod store;

pub use accounts::AccountDirectory;
pub use archive::{
    Archive, ArchivedHead, ArchivedVersion, BucketPolicyGuards, BucketProtection, Lifecycle,
    LockMode, PutSpec, UploadedPart, VersionMarker, VersionsPage,
};
pub use clock::{Clock, SystemClock};
pub use connector::SourceConnector;
pub use events::{BusEvent, EntryOutcome, EventBus, MAX_EVENTS_PER_CALL, MAX_EVENT_BYTES};
pub use keys::{KeyProvider, ListedPublicKey, PublicKeyDirectory};
pub use notifier::Notifier;
pub use queue::{NotificationQueue, QueueMessage};
pub use source::{
    pages, BucketOwnership, ByteStream, ListedObject, ListingPage, ObjectMeta, Pages, SourceObject,
    TrailSource,
};
pub use store::{key_folder, FreshFolder, ObjectBatch, ProgressStore};
