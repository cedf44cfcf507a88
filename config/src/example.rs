//! The documented example configuration, kept compiling-and-valid by a test so the
//! README never shows a config that would be rejected.

/// A complete, valid, commented configuration using every field. It mirrors the
/// example in `docs/config-schema.md`, with the `...` placeholders filled in so it
/// passes validation.
pub const EXAMPLE_TOML: &str = r#"[aws]
region = "us-east-1"                       # default "us-east-1"
endpoint_url = "http://127.0.0.1:4566"     # optional; when set, S3 uses path-style addressing
# Optional: read sources with these static credentials instead of assuming roles
# (S3-compatible servers without STS, e.g. the benchmark). Both or neither.
# source_access_key_id = "..."
# source_secret_access_key = "..."
# Every request: a stalled attempt times out and is retried (up to 10 attempts, 2 min).
connect_timeout_seconds = 5                # default 5, 1..=300: opening a connection
read_timeout_seconds = 20                  # default 20, 1..=3600: no byte for this long, before the answer
                                           # starts or while a body streams (a large GET may take long
                                           # while bytes flow; a silent one may not); a broken or stalled
                                           # body is read again by a new request
attempt_timeout_seconds = 60               # default 60, >= read_timeout_seconds, ..=3600: one attempt up to
                                           # the start of its answer's body
upload_min_bytes_per_second = 1048576      # default 1 MiB/s, >= 1 KiB/s: an upload of N bytes may take
                                           # N / this longer (attempt and read timeouts)

[archive]
bucket = "trailvault-archive"              # required
prefix = "archive"                         # default ""; no leading/trailing '/'
kms_key_id = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"   # required
retention_days = 365                       # default 365, 1..=36500
retention_mode = "COMPLIANCE"              # "COMPLIANCE" (default) | "GOVERNANCE"

[accounts]
ids = ["222222222222"]                     # static ids (12 digits each)
discover = false                           # AWS Organizations ListAccounts (ACTIVE only)
include = []                               # if non-empty, only these
exclude = []
role_name = "TrailvaultReader"             # default "TrailvaultReader"
external_id = "trailvault-example"         # required, 2..=1224 chars
session_duration_seconds = 3600            # default 3600, 900..=43200

[[sources]]                                # per-account trails
kind = "per_account"
bucket_template = "aws-cloudtrail-logs-{account_id}"   # must contain {account_id}
key_prefix = ""                            # default ""
regions = ["us-east-1", "eu-west-1"]       # default [] = discover from the bucket's folders

[[sources]]                                # organization trail
kind = "organization"
bucket = "org-trail-bucket"
org_id = "o-abc123def4"                    # o- followed by 10..32 lowercase alnum
key_prefix = "org"                         # default ""
reader_account_id = "333333333333"         # whose role reads this bucket
regions = []

[collect]
concurrency = 32                           # default 32, 1..=1024
lookback_days = 3                          # open partitions: today and the N previous days; default 3, 0..=31
redelivery_sweep_days = 30                 # default 30
multipart_threshold_bytes = 16777216       # default 16 MiB, >= 5 MiB
max_inflated_bytes = 268435456             # default 256 MiB
max_inflate_ratio = 1000                   # default 1000
verify_after_collect = true                # default true
source_requests_per_second = 0             # 0 = unlimited
max_keys_per_partition_per_run = 10000     # default 10000, 1..=10000000; new keys a run takes per day folder, the rest next run
max_object_bytes = 1073741824              # default 1 GiB, 1 MiB..=5 TiB; larger objects are a finding, not copied

[store]
path = "./trailvault-store"                # default "./trailvault-store"

[verify]
chain_head_stale_hours = 3                 # default 3
unreferenced_grace_hours = 24              # default 24
unreadable_grace_hours = 24                # default 24, 0..=8784: a listed log its source refuses, or keys
                                           # ListPublicKeys does not give, are an operational error this long, then a finding
max_digest_bytes = 4194304                 # default 4 MiB, 64 KiB..=256 MiB; larger digests are digest_malformed
public_keys_file = "keys.json"             # optional; else CloudTrail ListPublicKeys

[retention]
source_retention_days = 90                 # optional, 0..=36500; absent = source expiry off (default). With
                                           # `retention --apply`, deletes source files named more than N days ago
                                           # once archived unchanged and chain-validated (needs AllowSourceExpiry)

[alerts]
sns_topic_arn = "arn:aws:sns:us-east-1:111111111111:trailvault-alerts"   # optional
event_bus = "trailvault-findings"          # optional; EventBridge bus name or ARN: one event per finding
asff_account_id = "111111111111"           # optional; the Security Hub account of `findings --format asff`

[metrics]
addr = "127.0.0.1:9464"                    # optional; `trailvault run` serves Prometheus/OpenMetrics text
                                           # on http://ADDR/metrics (off by default; --metrics-addr overrides)

[shard]
spec = "env/3"                             # optional: "K/N" (shard K of N, 0-based) or "env/N" (K from
                                           # AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX); absent = every
                                           # account. --shard / TRAILVAULT_SHARD override it
[intake]
queue_url = "https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake"   # optional; `trailvault run`
                                           # copies the files its messages announce, within seconds (off by default)
dead_letter_queue_url = "https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake-dlq"  # required with queue_url
max_keys_per_message = 100                 # default 100, 1..=1000; a message naming more is dead-lettered
sweep_interval_seconds = 3600              # default 3600, 10..=604800; the listing sweep's cadence with intake on
visibility_timeout_seconds = 300           # default 300, 10..=43200; extended while a message is worked on
wait_seconds = 20                          # default 20, 1..=20; long-poll wait of one receive
"#;
