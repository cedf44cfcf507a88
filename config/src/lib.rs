//! Typed, validated trailvault settings.
//!
//! The schema is the contract in `docs/config-schema.md`. Parsing rejects unknown
//! fields everywhere (a typo is an error, not a silently ignored setting); validation
//! then checks every value and names the offending field with a dotted path such as
//! `sources[1].org_id`. The only I/O is reading the file in [`Config::load`].

mod error;
mod example;
mod intake;
mod raw;
mod settings;
mod validate;

use std::path::Path;

use serde::Deserialize;

pub use error::ConfigError;
pub use example::EXAMPLE_TOML;
pub use intake::IntakeSettings;
pub use settings::{
    AccountSettings, AlertSettings, ArchiveSettings, AwsSettings, CollectSettings, MetricsSettings,
    OrganizationSource, PerAccountSource, RetentionMode, RetentionSettings, ShardSettings,
    SourceSettings, StoreSettings, VerifySettings, ACCOUNT_ID_PLACEHOLDER,
};

/// The whole configuration file. `[archive]` and `[accounts]` are required; every
/// other table may be omitted and takes its defaults (`[[sources]]` then fails
/// validation, which needs at least one entry).
///
/// Unknown fields are rejected in every table. Deserializing a `Config` with serde
/// (any format) also resolves source kinds and validates, so a `Config` obtained from
/// serde is always valid; the schema attributes live on [`raw::RawConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "raw::RawConfig")]
pub struct Config {
    pub aws: AwsSettings,
    pub archive: ArchiveSettings,
    pub accounts: AccountSettings,
    pub sources: Vec<SourceSettings>,
    pub collect: CollectSettings,
    pub store: StoreSettings,
    pub verify: VerifySettings,
    pub retention: RetentionSettings,
    pub alerts: AlertSettings,
    pub metrics: MetricsSettings,
    pub shard: ShardSettings,
    pub intake: IntakeSettings,
}

impl Config {
    /// Parses and validates a TOML document. Syntax, unknown fields, wrong types and
    /// missing required fields are [`ConfigError::Parse`]; everything else is
    /// [`ConfigError::Invalid`] naming the field.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        // Read the raw shape rather than `Config` so kind and value errors stay typed
        // `Invalid` instead of being flattened into toml's message.
        let raw: raw::RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            message: error.to_string(),
        })?;
        Config::try_from(raw)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// Checks every rule serde cannot express; returns the first broken one. Called by
    /// [`Config::from_toml_str`]; public for configs built or modified in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    const MINIMAL_ARCHIVE: &str = r#"[archive]
bucket = "trailvault-archive"
kms_key_id = "alias/trailvault"
"#;
    const MINIMAL_ACCOUNTS: &str = r#"[accounts]
ids = ["222222222222"]
external_id = "ext-id"
"#;
    const MINIMAL_SOURCES: &str = r#"[[sources]]
kind = "per_account"
bucket_template = "aws-cloudtrail-logs-{account_id}"
"#;

    /// The minimal document with some tables swapped or added: an override whose
    /// first line is `[archive]`, `[accounts]` or `[[sources]]` replaces that part,
    /// anything else is appended.
    fn document(overrides: &[&str]) -> String {
        let header = |text: &str| text.lines().next().unwrap_or_default().trim().to_owned();
        let mut text = String::new();
        for base in [MINIMAL_ARCHIVE, MINIMAL_ACCOUNTS, MINIMAL_SOURCES] {
            let replacement = overrides.iter().find(|o| header(o) == header(base));
            text.push_str(replacement.copied().unwrap_or(base));
            text.push('\n');
        }
        for extra in overrides {
            if ![MINIMAL_ARCHIVE, MINIMAL_ACCOUNTS, MINIMAL_SOURCES]
                .iter()
                .any(|base| header(base) == header(extra))
            {
                text.push_str(extra);
                text.push('\n');
            }
        }
        text
    }

    fn minimal_config() -> Config {
        Config {
            aws: AwsSettings {
                region: "us-east-1".to_owned(),
                endpoint_url: None,
                partition: None,
                source_access_key_id: None,
                source_secret_access_key: None,
                connect_timeout_seconds: 5,
                read_timeout_seconds: 20,
                attempt_timeout_seconds: 60,
                upload_min_bytes_per_second: 1_048_576,
            },
            archive: ArchiveSettings {
                bucket: "trailvault-archive".to_owned(),
                prefix: String::new(),
                kms_key_id: "alias/trailvault".to_owned(),
                retention_days: 365,
                retention_mode: RetentionMode::Compliance,
            },
            accounts: AccountSettings {
                ids: vec!["222222222222".to_owned()],
                discover: false,
                include: vec![],
                exclude: vec![],
                role_name: "TrailvaultReader".to_owned(),
                external_id: "ext-id".to_owned(),
                session_duration_seconds: 3600,
            },
            sources: vec![SourceSettings::PerAccount(PerAccountSource {
                bucket_template: "aws-cloudtrail-logs-{account_id}".to_owned(),
                key_prefix: String::new(),
                regions: vec![],
            })],
            collect: CollectSettings {
                concurrency: 32,
                lookback_days: 3,
                redelivery_sweep_days: 30,
                multipart_threshold_bytes: 16 * 1024 * 1024,
                max_inflated_bytes: 256 * 1024 * 1024,
                max_inflate_ratio: 1000,
                verify_after_collect: true,
                source_requests_per_second: 0,
                max_keys_per_partition_per_run: 10_000,
                max_object_bytes: 1024 * 1024 * 1024,
            },
            store: StoreSettings {
                path: PathBuf::from("./trailvault-store"),
            },
            verify: VerifySettings {
                chain_head_stale_hours: 3,
                unreferenced_grace_hours: 24,
                unreadable_grace_hours: 24,
                max_digest_bytes: 4 * 1024 * 1024,
                public_keys_file: None,
            },
            retention: RetentionSettings {
                source_retention_days: None,
            },
            alerts: AlertSettings {
                sns_topic_arn: None,
                event_bus: None,
                asff_account_id: None,
            },
            metrics: MetricsSettings { addr: None },
            shard: ShardSettings::default(),
            intake: IntakeSettings::default(),
        }
    }

    fn organization_source() -> OrganizationSource {
        OrganizationSource {
            bucket: "org-trail-bucket".to_owned(),
            org_id: "o-abc123def4".to_owned(),
            key_prefix: String::new(),
            reader_account_id: "333333333333".to_owned(),
            regions: vec![],
        }
    }

    fn parse_error(text: &str) -> String {
        match Config::from_toml_str(text) {
            Err(ConfigError::Parse { message }) => message,
            other => panic!("expected a parse error, got {other:?}\n--- document ---\n{text}"),
        }
    }

    #[test]
    fn example_toml_parses_to_expected_struct() {
        let config = Config::from_toml_str(EXAMPLE_TOML).expect("EXAMPLE_TOML is valid");
        let mut expected = minimal_config();
        expected.aws.endpoint_url = Some("http://127.0.0.1:4566".to_owned());
        expected.archive.prefix = "archive".to_owned();
        expected.archive.kms_key_id =
            "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .to_owned();
        expected.accounts.external_id = "trailvault-example".to_owned();
        expected.sources = vec![
            SourceSettings::PerAccount(PerAccountSource {
                bucket_template: "aws-cloudtrail-logs-{account_id}".to_owned(),
                key_prefix: String::new(),
                regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
            }),
            SourceSettings::Organization(OrganizationSource {
                key_prefix: "org".to_owned(),
                ..organization_source()
            }),
        ];
        expected.verify.public_keys_file = Some(PathBuf::from("keys.json"));
        expected.retention.source_retention_days = Some(90);
        expected.alerts.sns_topic_arn =
            Some("arn:aws:sns:us-east-1:111111111111:trailvault-alerts".to_owned());
        expected.alerts.event_bus = Some("trailvault-findings".to_owned());
        expected.alerts.asff_account_id = Some("111111111111".to_owned());
        expected.metrics.addr = Some("127.0.0.1:9464".parse().unwrap());
        expected.shard.spec = Some("env/3".to_owned());
        expected.intake = IntakeSettings {
            queue_url: Some(
                "https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake".to_owned(),
            ),
            dead_letter_queue_url: Some(
                "https://sqs.us-east-1.amazonaws.com/111111111111/trailvault-intake-dlq".to_owned(),
            ),
            ..IntakeSettings::default()
        };
        assert_eq!(config, expected);
    }

    /// Every dotted key of a TOML document (array-of-tables entries share a path).
    fn key_paths(table: &toml::Table, prefix: &str, paths: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(inner) => key_paths(inner, &format!("{path}."), paths),
                toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                    for item in items {
                        if let toml::Value::Table(inner) = item {
                            key_paths(inner, &format!("{path}[]."), paths);
                        }
                    }
                }
                _ => {
                    paths.insert(path);
                }
            }
        }
    }

    /// The schema doc is the contract: its example must deserialize (field names and
    /// types match; deny_unknown_fields makes this exact), and EXAMPLE_TOML must set
    /// the same keys. The doc's example has `...` placeholders, so only parsing, not
    /// validation, is checked for it.
    #[test]
    fn schema_doc_example_matches_structs_and_example_toml() {
        let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config-schema.md");
        let doc = std::fs::read_to_string(doc_path)
            .unwrap_or_else(|error| panic!("cannot read {doc_path}: {error}"));
        let start = doc.find("```toml\n").expect("doc has a ```toml block") + "```toml\n".len();
        let length = doc[start..].find("```").expect("toml block is closed");
        let doc_example = &doc[start..start + length];

        let raw: raw::RawConfig = toml::from_str(doc_example)
            .unwrap_or_else(|error| panic!("schema doc example does not parse: {error}"));
        if let Err(error) = raw.into_config() {
            panic!("schema doc example has a source kind error: {error}");
        }

        let mut doc_keys = BTreeSet::new();
        key_paths(&toml::from_str(doc_example).unwrap(), "", &mut doc_keys);
        let mut example_keys = BTreeSet::new();
        key_paths(
            &toml::from_str(EXAMPLE_TOML).unwrap(),
            "",
            &mut example_keys,
        );
        assert_eq!(doc_keys, example_keys);
    }

    #[test]
    fn minimal_config_gets_all_defaults() {
        let config = Config::from_toml_str(&document(&[])).expect("minimal config is valid");
        assert_eq!(config, minimal_config());
        // The defaults used for omitted sections are the same named defaults.
        assert_eq!(config.aws, AwsSettings::default());
        assert_eq!(config.collect, CollectSettings::default());
        assert_eq!(config.store, StoreSettings::default());
        assert_eq!(config.verify, VerifySettings::default());
        assert_eq!(config.retention, RetentionSettings::default());
        assert_eq!(
            config.retention.source_retention_days, None,
            "source expiry is off"
        );
        assert_eq!(config.alerts, AlertSettings::default());
        assert_eq!(
            config.metrics.addr, None,
            "no metrics endpoint unless asked"
        );
    }

    #[test]
    fn metrics_address_must_be_an_ip_and_port() {
        let config = Config::from_toml_str(&document(&["[metrics]\naddr = \"[::1]:9464\"\n"]))
            .expect("an IPv6 address is valid");
        assert_eq!(config.metrics.addr, Some("[::1]:9464".parse().unwrap()));
        for bad in ["localhost:9464", "127.0.0.1", "127.0.0.1:99999", ""] {
            let message = parse_error(&document(&[&format!("[metrics]\naddr = \"{bad}\"\n")]));
            assert!(message.contains("addr"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn minimal_config_with_empty_sections_gets_all_defaults() {
        let text = document(&[
            "[aws]",
            "[collect]",
            "[store]",
            "[verify]",
            "[retention]",
            "[alerts]",
        ]);
        assert_eq!(Config::from_toml_str(&text).unwrap(), minimal_config());
    }

    /// One TOML string → struct case per section, each setting every field.
    #[test]
    fn each_section_parses_to_struct() {
        type Expect = fn(&mut Config);
        let cases: &[(&str, &str, Expect)] = &[
            (
                "aws",
                r#"[aws]
region = "eu-west-1"
endpoint_url = "https://s3.example.com:9000"
partition = "aws-us-gov"
source_access_key_id = "AKIAEXAMPLE"
source_secret_access_key = "secretexample"
connect_timeout_seconds = 3
read_timeout_seconds = 10
attempt_timeout_seconds = 30
upload_min_bytes_per_second = 2048
"#,
                |config| {
                    config.aws = AwsSettings {
                        region: "eu-west-1".to_owned(),
                        endpoint_url: Some("https://s3.example.com:9000".to_owned()),
                        partition: Some("aws-us-gov".to_owned()),
                        source_access_key_id: Some("AKIAEXAMPLE".to_owned()),
                        source_secret_access_key: Some("secretexample".to_owned()),
                        connect_timeout_seconds: 3,
                        read_timeout_seconds: 10,
                        attempt_timeout_seconds: 30,
                        upload_min_bytes_per_second: 2048,
                    }
                },
            ),
            (
                "archive",
                r#"[archive]
bucket = "my.archive-1"
prefix = "a/b"
kms_key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
retention_days = 2555
retention_mode = "GOVERNANCE"
"#,
                |config| {
                    config.archive = ArchiveSettings {
                        bucket: "my.archive-1".to_owned(),
                        prefix: "a/b".to_owned(),
                        kms_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
                        retention_days: 2555,
                        retention_mode: RetentionMode::Governance,
                    }
                },
            ),
            (
                "accounts",
                r#"[accounts]
ids = []
discover = true
include = ["444444444444"]
exclude = ["555555555555", "666666666666"]
role_name = "Reader"
external_id = "x:y/z"
session_duration_seconds = 900
"#,
                |config| {
                    config.accounts = AccountSettings {
                        ids: vec![],
                        discover: true,
                        include: vec!["444444444444".to_owned()],
                        exclude: vec!["555555555555".to_owned(), "666666666666".to_owned()],
                        role_name: "Reader".to_owned(),
                        external_id: "x:y/z".to_owned(),
                        session_duration_seconds: 900,
                    }
                },
            ),
            (
                "sources",
                r#"[[sources]]
kind = "organization"
bucket = "org-trail-bucket"
org_id = "o-abc123def4"
reader_account_id = "333333333333"

[[sources]]
kind = "per_account"
bucket_template = "trail-{account_id}-logs"
key_prefix = "team/logs"
regions = ["us-gov-west-1"]
"#,
                |config| {
                    config.sources = vec![
                        SourceSettings::Organization(organization_source()),
                        SourceSettings::PerAccount(PerAccountSource {
                            bucket_template: "trail-{account_id}-logs".to_owned(),
                            key_prefix: "team/logs".to_owned(),
                            regions: vec!["us-gov-west-1".to_owned()],
                        }),
                    ]
                },
            ),
            (
                "collect",
                r#"[collect]
concurrency = 4
lookback_days = 0
redelivery_sweep_days = 0
multipart_threshold_bytes = 5242880
max_inflated_bytes = 1048576
max_inflate_ratio = 10
verify_after_collect = false
source_requests_per_second = 50
max_keys_per_partition_per_run = 5
max_object_bytes = 1048576
"#,
                |config| {
                    config.collect = CollectSettings {
                        concurrency: 4,
                        lookback_days: 0,
                        redelivery_sweep_days: 0,
                        multipart_threshold_bytes: 5 * 1024 * 1024,
                        max_inflated_bytes: 1024 * 1024,
                        max_inflate_ratio: 10,
                        verify_after_collect: false,
                        source_requests_per_second: 50,
                        max_keys_per_partition_per_run: 5,
                        max_object_bytes: 1024 * 1024,
                    }
                },
            ),
            (
                "store",
                "[store]\npath = \"relative/store\"\n",
                |config| config.store.path = PathBuf::from("relative/store"),
            ),
            (
                "verify",
                r#"[verify]
chain_head_stale_hours = 6
unreferenced_grace_hours = 48
unreadable_grace_hours = 0
max_digest_bytes = 1048576
public_keys_file = "/etc/trailvault/keys.json"
"#,
                |config| {
                    config.verify = VerifySettings {
                        chain_head_stale_hours: 6,
                        unreferenced_grace_hours: 48,
                        unreadable_grace_hours: 0,
                        max_digest_bytes: 1024 * 1024,
                        public_keys_file: Some(PathBuf::from("/etc/trailvault/keys.json")),
                    }
                },
            ),
            (
                "retention",
                "[retention]\nsource_retention_days = 0\n",
                |config| config.retention.source_retention_days = Some(0),
            ),
            (
                "alerts",
                "[alerts]\nsns_topic_arn = \"arn:aws-us-gov:sns:us-gov-west-1:111111111111:alerts\"\nevent_bus = \"arn:aws-us-gov:events:us-gov-west-1:111111111111:event-bus/sec\"\nasff_account_id = \"111111111111\"\n",
                |config| {
                    config.alerts.sns_topic_arn =
                        Some("arn:aws-us-gov:sns:us-gov-west-1:111111111111:alerts".to_owned());
                    config.alerts.event_bus = Some(
                        "arn:aws-us-gov:events:us-gov-west-1:111111111111:event-bus/sec".to_owned(),
                    );
                    config.alerts.asff_account_id = Some("111111111111".to_owned());
                },
            ),
        ];
        for (section, toml_text, expect) in cases {
            let text = document(&[toml_text]);
            let parsed = Config::from_toml_str(&text)
                .unwrap_or_else(|error| panic!("[{section}] should parse: {error}\n{text}"));
            let mut expected = minimal_config();
            expect(&mut expected);
            assert_eq!(parsed, expected, "[{section}]");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_and_named() {
        let cases: &[(&str, String)] = &[
            ("top level", format!("bogus_field = 1\n{}", document(&[]))),
            ("top level table", document(&["[bogus_field]\nx = 1\n"])),
            ("aws", document(&["[aws]\nbogus_field = 1\n"])),
            ("archive", document(&[&format!("{MINIMAL_ARCHIVE}bogus_field = 1\n")])),
            ("accounts", document(&[&format!("{MINIMAL_ACCOUNTS}bogus_field = 1\n")])),
            ("sources per_account", document(&[&format!("{MINIMAL_SOURCES}bogus_field = 1\n")])),
            (
                "sources organization",
                document(&["[[sources]]\nkind = \"organization\"\nbucket = \"org-trail-bucket\"\norg_id = \"o-abc123def4\"\nreader_account_id = \"333333333333\"\nbogus_field = 1\n"]),
            ),
            ("collect", document(&["[collect]\nbogus_field = 1\n"])),
            ("store", document(&["[store]\nbogus_field = 1\n"])),
            ("verify", document(&["[verify]\nbogus_field = 1\n"])),
            ("retention", document(&["[retention]\nbogus_field = 1\n"])),
            ("alerts", document(&["[alerts]\nbogus_field = 1\n"])),
            ("metrics", document(&["[metrics]\nbogus_field = 1\n"])),
        ];
        for (section, text) in cases {
            let message = parse_error(text);
            assert!(
                message.contains("unknown field `bogus_field`"),
                "{section}: {message}"
            );
        }
    }

    /// Which fields belong to which `kind` is checked after parsing, so the error can
    /// name the entry's index.
    #[test]
    fn source_kind_rules_name_the_entry_and_field() {
        let organization = "[[sources]]\nkind = \"organization\"\nbucket = \"org-trail-bucket\"\norg_id = \"o-abc123def4\"\nreader_account_id = \"333333333333\"\n";
        let cases: &[(String, &str)] = &[
            (
                format!("{MINIMAL_SOURCES}\n{organization}bucket_template = \"aws-{{account_id}}\"\n"),
                "sources[1].bucket_template",
            ),
            (
                format!("{MINIMAL_SOURCES}bucket = \"org-trail-bucket\"\n"),
                "sources[0].bucket",
            ),
            (
                format!("{MINIMAL_SOURCES}org_id = \"o-abc123def4\"\n"),
                "sources[0].org_id",
            ),
            (
                format!("{MINIMAL_SOURCES}reader_account_id = \"333333333333\"\n"),
                "sources[0].reader_account_id",
            ),
            (
                "[[sources]]\nbucket_template = \"a-{account_id}\"\n".to_owned(),
                "sources[0].kind",
            ),
            (
                "[[sources]]\nkind = \"per_account\"\n".to_owned(),
                "sources[0].bucket_template",
            ),
            (
                format!("{MINIMAL_SOURCES}\n[[sources]]\nkind = \"organization\"\norg_id = \"o-abc123def4\"\nreader_account_id = \"333333333333\"\n"),
                "sources[1].bucket",
            ),
            (
                "[[sources]]\nkind = \"organization\"\nbucket = \"org-trail-bucket\"\nreader_account_id = \"333333333333\"\n".to_owned(),
                "sources[0].org_id",
            ),
            (
                "[[sources]]\nkind = \"organization\"\nbucket = \"org-trail-bucket\"\norg_id = \"o-abc123def4\"\n".to_owned(),
                "sources[0].reader_account_id",
            ),
        ];
        for (sources, field) in cases {
            let text = document(&[sources]);
            match Config::from_toml_str(&text) {
                Err(ConfigError::Invalid {
                    field: actual,
                    problem,
                }) => assert_eq!(&actual, field, "{problem}\n{text}"),
                other => panic!("{field}: expected Invalid, got {other:?}\n{text}"),
            }
        }
    }

    /// Inside a `[[sources]]` entry a type error still names the field and its line
    /// (the reason sources are not an internally tagged enum).
    #[test]
    fn source_type_errors_point_at_the_field() {
        let text = document(&["[[sources]]\nkind = \"per_account\"\nbucket_template = 5\n"]);
        let message = parse_error(&text);
        assert!(message.contains("bucket_template = 5"), "{message}");
        assert!(message.contains("expected a string"), "{message}");
    }

    #[test]
    fn malformed_documents_are_parse_errors_naming_the_problem() {
        let cases: &[(&str, String, &str)] = &[
            (
                "missing [archive]",
                document(&[]).replace(MINIMAL_ARCHIVE, ""),
                "missing field `archive`",
            ),
            (
                "missing archive.bucket",
                document(&["[archive]\nkms_key_id = \"alias/k\"\n"]),
                "missing field `bucket`",
            ),
            (
                "missing accounts.external_id",
                document(&["[accounts]\nids = [\"222222222222\"]\n"]),
                "missing field `external_id`",
            ),
            (
                "unknown kind",
                document(&["[[sources]]\nkind = \"bogus_kind\"\n"]),
                "bogus_kind",
            ),
            (
                "lowercase retention_mode",
                document(&[&format!(
                    "{MINIMAL_ARCHIVE}retention_mode = \"compliance\"\n"
                )]),
                "compliance",
            ),
            (
                "wrong type",
                document(&["[collect]\nconcurrency = \"many\"\n"]),
                "concurrency",
            ),
            (
                "negative number",
                document(&["[collect]\nlookback_days = -1\n"]),
                "lookback_days",
            ),
            (
                "negative source_retention_days",
                document(&["[retention]\nsource_retention_days = -1\n"]),
                "source_retention_days",
            ),
            (
                "fractional source_retention_days",
                document(&["[retention]\nsource_retention_days = 0.5\n"]),
                "source_retention_days",
            ),
            ("not toml", "[archive\n".to_owned(), "line 1"),
        ];
        for (name, text, needle) in cases {
            let message = parse_error(text);
            assert!(
                message.contains(needle),
                "{name}: {needle:?} not in {message}"
            );
        }
    }

    /// One case per rule: mutate a valid config, expect `Invalid` naming `field`.
    #[test]
    fn each_validation_rule_names_its_field() {
        type Break = fn(&mut Config);
        fn per_account(config: &mut Config) -> &mut PerAccountSource {
            match &mut config.sources[0] {
                SourceSettings::PerAccount(source) => source,
                SourceSettings::Organization(_) => unreachable!("minimal source is per_account"),
            }
        }
        /// Appends an organization source at index 1 and returns it.
        fn organization(config: &mut Config) -> &mut OrganizationSource {
            config
                .sources
                .push(SourceSettings::Organization(organization_source()));
            match &mut config.sources[1] {
                SourceSettings::Organization(source) => source,
                SourceSettings::PerAccount(_) => unreachable!(),
            }
        }
        let cases: &[(&str, Break)] = &[
            // [aws]
            ("aws.region", |c| c.aws.region = "us-east".to_owned()),
            ("aws.partition", |c| {
                c.aws.partition = Some("AWS".to_owned())
            }),
            ("aws.partition", |c| {
                c.aws.partition = Some("aws-".to_owned())
            }),
            ("aws.partition", |c| {
                c.aws.partition = Some("gcp".to_owned())
            }),
            ("aws.partition", |c| {
                c.aws.partition = Some("aws--cn".to_owned())
            }),
            ("aws.endpoint_url", |c| {
                c.aws.endpoint_url = Some("localhost:4566".to_owned())
            }),
            ("aws.endpoint_url", |c| {
                c.aws.endpoint_url = Some("http://localhost:4566/path".to_owned())
            }),
            ("aws.source_secret_access_key", |c| {
                c.aws.source_access_key_id = Some("AKIA".to_owned())
            }),
            ("aws.source_access_key_id", |c| {
                c.aws.source_secret_access_key = Some("secret".to_owned())
            }),
            ("aws.source_access_key_id", |c| {
                c.aws.source_access_key_id = Some(String::new());
                c.aws.source_secret_access_key = Some("secret".to_owned());
            }),
            // [archive]
            ("archive.bucket", |c| {
                c.archive.bucket = "Trailvault".to_owned()
            }),
            ("archive.bucket", |c| c.archive.bucket = "ab".to_owned()),
            ("archive.bucket", |c| {
                c.archive.bucket = "-archive".to_owned()
            }),
            ("archive.prefix", |c| {
                c.archive.prefix = "/archive".to_owned()
            }),
            ("archive.prefix", |c| {
                c.archive.prefix = "archive/".to_owned()
            }),
            ("archive.prefix", |c| c.archive.prefix = "a//b".to_owned()),
            ("archive.kms_key_id", |c| {
                c.archive.kms_key_id = String::new()
            }),
            ("archive.kms_key_id", |c| {
                c.archive.kms_key_id = "arn:aws:kms".to_owned()
            }),
            ("aws.connect_timeout_seconds", |c| {
                c.aws.connect_timeout_seconds = 0
            }),
            ("aws.read_timeout_seconds", |c| {
                c.aws.read_timeout_seconds = 0
            }),
            ("aws.attempt_timeout_seconds", |c| {
                c.aws.attempt_timeout_seconds = 3_601
            }),
            ("aws.attempt_timeout_seconds", |c| {
                c.aws.read_timeout_seconds = 30;
                c.aws.attempt_timeout_seconds = 29
            }),
            ("aws.upload_min_bytes_per_second", |c| {
                c.aws.upload_min_bytes_per_second = 1_023
            }),
            ("archive.retention_days", |c| c.archive.retention_days = 0),
            ("archive.retention_days", |c| {
                c.archive.retention_days = 36_501
            }),
            // [accounts]
            ("accounts.ids", |c| c.accounts.ids.clear()),
            ("accounts.ids[1]", |c| {
                c.accounts.ids.push("12345".to_owned())
            }),
            ("accounts.include[0]", |c| {
                c.accounts.include.push("abcdefghijkl".to_owned())
            }),
            ("accounts.exclude[0]", |c| {
                c.accounts.exclude.push("1234567890123".to_owned())
            }),
            ("accounts.role_name", |c| {
                c.accounts.role_name = String::new()
            }),
            ("accounts.role_name", |c| {
                c.accounts.role_name = "a".repeat(65)
            }),
            ("accounts.role_name", |c| {
                c.accounts.role_name = "path/Role".to_owned()
            }),
            ("accounts.external_id", |c| {
                c.accounts.external_id = "x".to_owned()
            }),
            ("accounts.external_id", |c| {
                c.accounts.external_id = "x".repeat(1225)
            }),
            ("accounts.external_id", |c| {
                c.accounts.external_id = "has space".to_owned()
            }),
            ("accounts.session_duration_seconds", |c| {
                c.accounts.session_duration_seconds = 899
            }),
            ("accounts.session_duration_seconds", |c| {
                c.accounts.session_duration_seconds = 43_201
            }),
            // [[sources]]
            ("sources", |c| c.sources.clear()),
            ("sources[0].bucket_template", |c| {
                per_account(c).bucket_template = "aws-cloudtrail-logs".to_owned()
            }),
            ("sources[0].bucket_template", |c| {
                per_account(c).bucket_template = "AWS-{account_id}".to_owned()
            }),
            ("sources[0].bucket_template", |c| {
                per_account(c).bucket_template = "{account_id}-".to_owned()
            }),
            ("sources[0].key_prefix", |c| {
                per_account(c).key_prefix = "/logs".to_owned()
            }),
            ("sources[0].regions[1]", |c| {
                per_account(c).regions = vec!["us-east-1".to_owned(), "useast1".to_owned()]
            }),
            ("sources[1].bucket", |c| {
                organization(c).bucket = "org_trail".to_owned()
            }),
            ("sources[1].org_id", |c| {
                organization(c).org_id = "o-short".to_owned()
            }),
            ("sources[1].org_id", |c| {
                organization(c).org_id = "r-abc123def4".to_owned()
            }),
            ("sources[1].key_prefix", |c| {
                organization(c).key_prefix = "org//x".to_owned()
            }),
            ("sources[1].reader_account_id", |c| {
                organization(c).reader_account_id = "33333333333".to_owned()
            }),
            ("sources[1].regions[0]", |c| {
                organization(c).regions = vec!["global".to_owned()]
            }),
            // [collect]
            ("collect.concurrency", |c| c.collect.concurrency = 0),
            ("collect.concurrency", |c| c.collect.concurrency = 1025),
            ("collect.lookback_days", |c| c.collect.lookback_days = 32),
            ("collect.redelivery_sweep_days", |c| {
                c.collect.redelivery_sweep_days = 2
            }),
            ("collect.redelivery_sweep_days", |c| {
                c.collect.redelivery_sweep_days = 46
            }),
            ("collect.multipart_threshold_bytes", |c| {
                c.collect.multipart_threshold_bytes = 5 * 1024 * 1024 - 1
            }),
            ("collect.multipart_threshold_bytes", |c| {
                c.collect.multipart_threshold_bytes = 5 * 1024 * 1024 * 1024 + 1
            }),
            ("collect.max_inflated_bytes", |c| {
                c.collect.max_inflated_bytes = 1024 * 1024 - 1
            }),
            ("collect.max_inflate_ratio", |c| {
                c.collect.max_inflate_ratio = 9
            }),
            ("collect.max_keys_per_partition_per_run", |c| {
                c.collect.max_keys_per_partition_per_run = 0
            }),
            ("collect.max_keys_per_partition_per_run", |c| {
                c.collect.max_keys_per_partition_per_run = 10_000_001
            }),
            ("collect.max_object_bytes", |c| {
                c.collect.max_object_bytes = 1024 * 1024 - 1
            }),
            // [store], [verify], [alerts]
            ("store.path", |c| c.store.path = PathBuf::new()),
            ("verify.public_keys_file", |c| {
                c.verify.public_keys_file = Some(PathBuf::new())
            }),
            ("verify.unreadable_grace_hours", |c| {
                c.verify.unreadable_grace_hours = 24 * 366 + 1
            }),
            ("verify.max_digest_bytes", |c| {
                c.verify.max_digest_bytes = 64 * 1024 - 1
            }),
            ("verify.max_digest_bytes", |c| {
                c.verify.max_digest_bytes = 256 * 1024 * 1024 + 1
            }),
            ("retention.source_retention_days", |c| {
                c.retention.source_retention_days = Some(36_501)
            }),
            ("alerts.sns_topic_arn", |c| {
                c.alerts.sns_topic_arn = Some("arn:aws:sns:...".to_owned())
            }),
            ("alerts.sns_topic_arn", |c| {
                c.alerts.sns_topic_arn = Some("sns:topic".to_owned())
            }),
            ("alerts.event_bus", |c| {
                c.alerts.event_bus = Some("my bus".to_owned())
            }),
            ("alerts.event_bus", |c| {
                c.alerts.event_bus = Some("arn:aws:sns:us-east-1:111111111111:t".to_owned())
            }),
            ("alerts.asff_account_id", |c| {
                c.alerts.asff_account_id = Some("1234".to_owned())
            }),
        ];
        for (index, (field, break_rule)) in cases.iter().enumerate() {
            let mut config = minimal_config();
            break_rule(&mut config);
            match config.validate() {
                Err(ConfigError::Invalid {
                    field: actual,
                    problem,
                }) => {
                    assert_eq!(&actual, field, "case {index}: {problem}");
                    assert!(!problem.is_empty());
                }
                other => panic!("case {index} ({field}): expected Invalid, got {other:?}"),
            }
        }
    }

    /// Boundary values and optional forms that must stay valid.
    #[test]
    fn boundary_values_are_accepted() {
        type Adjust = fn(&mut Config);
        let cases: &[Adjust] = &[
            |c| {
                c.accounts.ids.clear();
                c.accounts.discover = true;
            },
            |c| c.accounts.session_duration_seconds = 900,
            |c| c.accounts.session_duration_seconds = 43_200,
            |c| c.accounts.role_name = "a".repeat(64),
            |c| c.accounts.external_id = "ab".to_owned(),
            |c| c.archive.retention_days = 1,
            |c| c.archive.retention_days = 36_500,
            |c| {
                c.aws.read_timeout_seconds = 1;
                c.aws.attempt_timeout_seconds = 1;
                c.aws.connect_timeout_seconds = 1;
            },
            |c| c.archive.prefix = "a/b/c".to_owned(),
            |c| c.archive.kms_key_id = "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
            |c| c.collect.concurrency = 1,
            |c| c.collect.concurrency = 1024,
            |c| {
                c.collect.lookback_days = 0;
                c.collect.redelivery_sweep_days = 0;
            },
            |c| {
                c.collect.lookback_days = 31;
                c.collect.redelivery_sweep_days = 31;
            },
            |c| c.collect.redelivery_sweep_days = 45,
            |c| c.collect.multipart_threshold_bytes = 5 * 1024 * 1024,
            |c| c.collect.multipart_threshold_bytes = 5 * 1024 * 1024 * 1024,
            |c| {
                c.aws.source_access_key_id = Some("AKIA".to_owned());
                c.aws.source_secret_access_key = Some("secret".to_owned());
            },
            |c| c.aws.endpoint_url = Some("https://s3.example.com".to_owned()),
            |c| c.aws.region = "ap-northeast-1".to_owned(),
            |c| c.store.path = PathBuf::from("../elsewhere/store"),
            |c| c.retention.source_retention_days = Some(0),
            |c| c.retention.source_retention_days = Some(36_500),
        ];
        for (index, adjust) in cases.iter().enumerate() {
            let mut config = minimal_config();
            adjust(&mut config);
            assert!(
                config.validate().is_ok(),
                "case {index}: {:?}",
                config.validate()
            );
        }
    }

    #[test]
    fn validation_runs_on_parse_and_names_nested_source_fields() {
        let text = document(&[&format!(
            "{MINIMAL_SOURCES}\n[[sources]]\nkind = \"organization\"\nbucket = \"org-trail-bucket\"\norg_id = \"o-BAD\"\nreader_account_id = \"333333333333\"\n"
        )]);
        let error = Config::from_toml_str(&text).unwrap_err();
        assert_eq!(error.field(), Some("sources[1].org_id"), "{error}");
        assert!(error.to_string().contains("sources[1].org_id"), "{error}");
        assert!(!error.is_retryable());
    }

    /// A `Config` from serde (not via `from_toml_str`) is validated too, and a single
    /// source can be deserialized on its own.
    #[test]
    fn serde_deserialization_validates() {
        let valid: Config = toml::from_str(EXAMPLE_TOML).unwrap();
        assert_eq!(valid, Config::from_toml_str(EXAMPLE_TOML).unwrap());

        let invalid = document(&["[collect]\nconcurrency = 0\n"]);
        let error = toml::from_str::<Config>(&invalid).unwrap_err().to_string();
        assert!(error.contains("collect.concurrency"), "{error}");

        let source: SourceSettings =
            toml::from_str(MINIMAL_SOURCES.trim_start_matches("[[sources]]\n")).unwrap();
        assert_eq!(source, minimal_config().sources[0]);
        let error = toml::from_str::<SourceSettings>("kind = \"organization\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`bucket`: is required"), "{error}");
    }

    #[test]
    fn store_path_is_kept_as_given() {
        let text = document(&["[store]\npath = \"data/../store\"\n"]);
        let config = Config::from_toml_str(&text).unwrap();
        assert_eq!(config.store.path, PathBuf::from("data/../store"));
    }

    #[test]
    fn bucket_for_renders_the_template() {
        let cases = [
            (
                "aws-cloudtrail-logs-{account_id}",
                "aws-cloudtrail-logs-222222222222",
            ),
            ("{account_id}-trail", "222222222222-trail"),
            (
                "trail-{account_id}-{account_id}",
                "trail-222222222222-222222222222",
            ),
        ];
        for (template, bucket) in cases {
            let source = PerAccountSource {
                bucket_template: template.to_owned(),
                key_prefix: String::new(),
                regions: vec![],
            };
            assert_eq!(source.bucket_for("222222222222"), bucket);
        }
    }

    #[test]
    fn retention_mode_strings() {
        assert_eq!(RetentionMode::Compliance.as_str(), "COMPLIANCE");
        assert_eq!(RetentionMode::Governance.as_str(), "GOVERNANCE");
        assert_eq!(RetentionMode::Governance.to_string(), "GOVERNANCE");
    }

    #[test]
    fn debug_output_redacts_the_secret_key() {
        let mut config = minimal_config();
        config.aws.source_access_key_id = Some("AKIAEXAMPLE".to_owned());
        config.aws.source_secret_access_key = Some("super-secret-value".to_owned());
        let debug = format!("{config:?}");
        assert!(!debug.contains("super-secret-value"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn load_reads_the_file_and_reports_io_errors() {
        let path = std::env::temp_dir().join(format!(
            "trailvault-config-test-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, EXAMPLE_TOML).unwrap();
        let loaded = Config::load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            loaded.unwrap(),
            Config::from_toml_str(EXAMPLE_TOML).unwrap()
        );

        let missing = std::env::temp_dir().join("trailvault-config-test-does-not-exist.toml");
        match Config::load(&missing) {
            Err(ConfigError::Io { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
