//! S3 key names of CloudTrail log and digest files (docs/cloudtrail-format.md §1).
//!
//! Layouts (docs/cloudtrail-format.md §1.1, §1.2):
//!
//! ```text
//! [<prefix>/]AWSLogs/[<o-org>/]<acct>/<folder>/<region>/YYYY/MM/DD/<acct>_<folder>_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz
//! [<prefix>/]AWSLogs/[<o-org>/]<acct>/CloudTrail-Digest/<region>/YYYY/MM/DD/<acct>_CloudTrail-Digest_<region>_<trail>_<homeRegion>_<YYYYMMDDTHHMMSSZ>[_backfill].json.gz
//! ```
//!
//! Keys come from buckets that member accounts control, so [`parse_trail_key`] never
//! panics and reports every deviation as a [`KeyError`]; the caller decides which of
//! them are findings. The key is parsed from the right (the part after `AWSLogs/` has
//! a fixed number of segments), so a key prefix may contain any text, even `AWSLogs`.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};

/// Folder (and file-name infix) of digest files.
pub const DIGEST_FOLDER: &str = "CloudTrail-Digest";
/// Folder (and file-name infix) of the ordinary management/data event log files.
pub const LOG_FOLDER: &str = "CloudTrail";
/// The fixed path segment every CloudTrail key has after the configurable prefix.
pub const AWS_LOGS: &str = "AWSLogs";

const GZIP_JSON_SUFFIX: &str = ".json.gz";
const BACKFILL_SUFFIX: &str = "_backfill";
/// Longest accepted unique string in a log file name (AWS uses 16 characters).
const MAX_UNIQUE_LEN: usize = 64;
/// Longest accepted folder family name, to keep error messages and state small.
const MAX_FOLDER_LEN: usize = 64;
/// Longest accepted region name (the longest real ones are ~15 characters).
const MAX_REGION_LEN: usize = 32;

/// Why a key is not a well-formed CloudTrail log or digest key.
///
/// The mismatch variants ([`KeyError::AccountMismatch`], [`KeyError::RegionMismatch`],
/// [`KeyError::FolderMismatch`], [`KeyError::DateMismatch`]) are separate so the caller
/// can raise specific findings (e.g. `account_mismatch`) for keys that are shaped
/// correctly but contradict themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key does not have `AWSLogs/[o-org/]acct/folder/region/YYYY/MM/DD/file` at its end.
    #[error("key does not have the CloudTrail layout [prefix/]AWSLogs/[o-org/]account/folder/region/YYYY/MM/DD/file")]
    NotCloudTrailLayout,
    /// The key starts with `/AWSLogs/`: an empty prefix segment that would not survive
    /// rebuilding the key from its parts.
    #[error("key has an empty prefix before AWSLogs/ (leading '/')")]
    EmptyPrefix,
    /// The organization segment is not `o-` followed by 10–32 lowercase letters/digits.
    #[error("invalid organization id {0:?}")]
    BadOrgId(String),
    /// An account id (folder or file name) is not exactly 12 ASCII digits.
    #[error("invalid account id {0:?}")]
    BadAccountId(String),
    /// The folder after the account is neither `CloudTrail`, `CloudTrail-Digest` nor
    /// another `CloudTrail-<Name>` sibling.
    #[error("unknown CloudTrail folder {0:?}")]
    UnknownFolder(String),
    /// A region (folder, file name or home region) does not look like `us-east-1`.
    #[error("invalid region {0:?}")]
    BadRegion(String),
    /// The `YYYY/MM/DD` folders are not a valid calendar date.
    #[error("invalid date folders {0:?}")]
    BadDate(String),
    /// The file name does not have the expected shape.
    #[error("invalid file name {file:?}: {reason}")]
    BadFileName {
        /// The offending file name (last key segment).
        file: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The timestamp in the file name is not `YYYYMMDDTHHmmZ` (logs) or
    /// `YYYYMMDDTHHMMSSZ` (digests), or not a valid time.
    #[error("invalid timestamp {0:?} in file name")]
    BadTimestamp(String),
    /// The trail name is not 3..=128 characters of `[A-Za-z0-9._-]`.
    #[error("invalid trail name {0:?}")]
    BadTrailName(String),
    /// The account in the file name differs from the account folder.
    #[error("account folder {folder} differs from account {file} in the file name")]
    AccountMismatch {
        /// Account id from the folder path.
        folder: String,
        /// Account id from the file name.
        file: String,
    },
    /// The delivering region in the file name differs from the region folder.
    #[error("region folder {folder} differs from region {file} in the file name")]
    RegionMismatch {
        /// Region from the folder path.
        folder: String,
        /// Region from the file name.
        file: String,
    },
    /// The folder family in the file name differs from the folder.
    #[error("folder {folder} differs from {file} in the file name")]
    FolderMismatch {
        /// Folder family from the path.
        folder: String,
        /// Folder family from the file name.
        file: String,
    },
    /// A digest's `YYYY/MM/DD` folder is not the date of its end timestamp
    /// (docs/cloudtrail-format.md §1.2: the folder is the digest end date).
    #[error("date folder {folder} differs from the digest end date {file}")]
    DateMismatch {
        /// Date from the folders.
        folder: NaiveDate,
        /// Date of the timestamp in the file name.
        file: NaiveDate,
    },
}

/// Which kind of trail file a key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Family {
    /// A log file in `CloudTrail/` or a sibling such as `CloudTrail-Insight/`;
    /// `folder` is the folder name as found.
    Log {
        /// The folder name, e.g. `CloudTrail` or `CloudTrail-Insight`.
        folder: String,
    },
    /// A digest file in `CloudTrail-Digest/`.
    Digest,
}

impl Family {
    /// The folder name this family lives in.
    pub fn folder(&self) -> &str {
        match self {
            Family::Log { folder } => folder,
            Family::Digest => DIGEST_FOLDER,
        }
    }
}

/// The parsed last segment of a trail key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileName {
    /// `<acct>_<folder>_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz`.
    Log {
        /// Account id from the file name (equals the folder account).
        account_id: String,
        /// Region from the file name (equals the region folder).
        region: String,
        /// Delivery time, to the minute, UTC.
        delivered_at: NaiveDateTime,
        /// The meaningless unique string (16 characters from AWS).
        unique: String,
    },
    /// `<acct>_CloudTrail-Digest_<region>_<trail>_<homeRegion>_<YYYYMMDDTHHMMSSZ>[_backfill].json.gz`.
    Digest {
        /// Account id from the file name (equals the folder account).
        account_id: String,
        /// Delivering region (equals the region folder).
        region: String,
        /// Trail name; may contain `_`, `.` and `-`.
        trail_name: String,
        /// The trail's home region (after the last `_`).
        home_region: String,
        /// Digest end time, to the second, UTC.
        end_time: NaiveDateTime,
        /// Whether the name ends in `_backfill` (a separate chain, docs/cloudtrail-format.md §2).
        backfill: bool,
    },
}

/// A parsed CloudTrail S3 key. [`TrailKey::to_key`] rebuilds exactly the parsed key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrailKey {
    /// Everything before `/AWSLogs/`, without the trailing `/`; empty if the key
    /// starts with `AWSLogs/`.
    pub prefix: String,
    /// The organization id (`o-…`) of an organization trail layout.
    pub org_id: Option<String>,
    /// The account folder (the member account for organization trails).
    pub account_id: String,
    /// Log or digest, with the folder name.
    pub family: Family,
    /// The region folder: the delivering region.
    pub region: String,
    /// The `YYYY/MM/DD` folder date.
    pub date: NaiveDate,
    /// The parsed file name.
    pub file: FileName,
}

impl TrailKey {
    /// The listing prefix of this key's partition: the key up to and including
    /// `YYYY/MM/DD/`.
    pub fn partition_prefix(&self) -> String {
        partition_prefix(
            &self.prefix,
            self.org_id.as_deref(),
            &self.account_id,
            self.family.folder(),
            &self.region,
            self.date,
        )
    }

    /// Whether this is a digest file (standard or backfill).
    pub fn is_digest(&self) -> bool {
        matches!(self.family, Family::Digest)
    }

    /// Whether this is a backfill digest (`…_backfill.json.gz`).
    pub fn is_backfill(&self) -> bool {
        matches!(self.file, FileName::Digest { backfill: true, .. })
    }

    /// The file name (last key segment), rebuilt from the parsed parts.
    pub fn file_name(&self) -> String {
        match &self.file {
            FileName::Log {
                account_id,
                region,
                delivered_at,
                unique,
            } => format!(
                "{}_{unique}{GZIP_JSON_SUFFIX}",
                log_name_start(account_id, self.family.folder(), region, *delivered_at),
            ),
            FileName::Digest {
                account_id,
                region,
                trail_name,
                home_region,
                end_time,
                backfill,
            } => digest_file_name(
                account_id,
                region,
                trail_name,
                home_region,
                *end_time,
                *backfill,
            ),
        }
    }

    /// The full key, rebuilt from the parsed parts; equals the parsed input.
    pub fn to_key(&self) -> String {
        let mut key = self.partition_prefix();
        key.push_str(&self.file_name());
        key
    }

    /// Whether the date in the file name equals the date folder. Always true for
    /// digests (enforced by [`parse_trail_key`]); for log files the folder is the
    /// publication date and the name the delivery time, which AWS documents as the
    /// same day but which is not enforced here.
    pub fn file_date_matches_folder(&self) -> bool {
        let file_date = match &self.file {
            FileName::Log { delivered_at, .. } => delivered_at.date(),
            FileName::Digest { end_time, .. } => end_time.date(),
        };
        file_date == self.date
    }
}

/// The start of a log file's name up to its delivery time:
/// `<account>_<folder>_<region>_<YYYYMMDDTHHmmZ>` (the unique string and the
/// suffix follow). Names of one account, folder and region sort by delivery
/// time: the fields before the time are fixed, the time has a fixed width.
pub fn log_name_start(
    account_id: &str,
    folder: &str,
    region: &str,
    delivered_at: NaiveDateTime,
) -> String {
    format!(
        "{account_id}_{folder}_{region}_{}",
        delivered_at.format("%Y%m%dT%H%MZ")
    )
}

/// The root of one account's files: `[prefix/]AWSLogs/[org/]account/`. The one
/// place that knows the layout above the folders; every other prefix and state
/// name builds on it. An empty `prefix` means the key starts with `AWSLogs/`.
pub fn account_root(prefix: &str, org_id: Option<&str>, account: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 40);
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push('/');
    }
    out.push_str(AWS_LOGS);
    out.push('/');
    if let Some(org) = org_id {
        out.push_str(org);
        out.push('/');
    }
    out.push_str(account);
    out.push('/');
    out
}

/// Builds the listing prefix `[prefix/]AWSLogs/[org/]account/folder/region/YYYY/MM/DD/`.
///
/// An empty `prefix` means the key starts with `AWSLogs/`. Inputs are not validated:
/// this builds prefixes from configuration and from parsed keys.
pub fn partition_prefix(
    prefix: &str,
    org_id: Option<&str>,
    account: &str,
    folder: &str,
    region: &str,
    date: NaiveDate,
) -> String {
    let mut out = account_root(prefix, org_id, account);
    out.push_str(folder);
    out.push('/');
    out.push_str(region);
    out.push('/');
    out.push_str(&format!(
        "{:04}/{:02}/{:02}/",
        date.year(),
        date.month(),
        date.day()
    ));
    out
}

/// The parts that identify one digest chain's keys (docs/cloudtrail-format.md §1.2), for [`digest_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestKeyParts<'a> {
    /// S3 key prefix before `AWSLogs/`, without trailing `/`; may be empty.
    pub prefix: &'a str,
    /// Organization id for the organization-trail layout.
    pub org_id: Option<&'a str>,
    /// Account id (member account for organization trails).
    pub account_id: &'a str,
    /// Delivering region.
    pub region: &'a str,
    /// Trail name.
    pub trail_name: &'a str,
    /// Home region of the trail.
    pub home_region: &'a str,
}

/// Builds a digest key exactly like the AWS CLI's `_create_digest_key` (docs/cloudtrail-format.md §1.2):
/// the date folder is the end time's date, the timestamp `%Y%m%dT%H%M%SZ`.
///
/// Inputs are not validated; keys built from valid parts round-trip through
/// [`parse_trail_key`].
pub fn digest_key(parts: &DigestKeyParts<'_>, end_time: NaiveDateTime, backfill: bool) -> String {
    let mut key = partition_prefix(
        parts.prefix,
        parts.org_id,
        parts.account_id,
        DIGEST_FOLDER,
        parts.region,
        end_time.date(),
    );
    key.push_str(&digest_file_name(
        parts.account_id,
        parts.region,
        parts.trail_name,
        parts.home_region,
        end_time,
        backfill,
    ));
    key
}

fn digest_file_name(
    account_id: &str,
    region: &str,
    trail_name: &str,
    home_region: &str,
    end_time: NaiveDateTime,
    backfill: bool,
) -> String {
    format!(
        "{account_id}_{DIGEST_FOLDER}_{region}_{trail_name}_{home_region}_{stamp}{backfill}{GZIP_JSON_SUFFIX}",
        stamp = end_time.format("%Y%m%dT%H%M%SZ"),
        backfill = if backfill { BACKFILL_SUFFIX } else { "" },
    )
}

/// Parses a CloudTrail log or digest key (docs/cloudtrail-format.md §1).
///
/// Accepts an optional multi-segment prefix before `AWSLogs/`, an optional `o-…`
/// organization segment, the `CloudTrail`, `CloudTrail-Digest` and any other
/// `CloudTrail-<Name>` folder. Validates 12-digit accounts, region names, the date
/// folders, the file-name shape and, for digests, trail name, home region and that
/// the date folder is the end date. Digest names are split per docs/cloudtrail-format.md §1.2 "parsing
/// names" rule: strip the known front and back, the home region is after the last
/// `_`, never `split('_')`, because trail names may contain `_`.
///
/// Never panics, whatever the input.
pub fn parse_trail_key(key: &str) -> Result<TrailKey, KeyError> {
    // From the right: file, DD, MM, YYYY, region, folder, account, [org], AWSLogs, prefix...
    let mut segments = key.rsplit('/');
    let mut next = || segments.next().ok_or(KeyError::NotCloudTrailLayout);
    let file = next()?;
    let day = next()?;
    let month = next()?;
    let year = next()?;
    let region = next()?;
    let folder = next()?;
    let account_id = next()?;
    let after_account = next()?;
    let org_id = if after_account == AWS_LOGS {
        None
    } else if after_account.starts_with("o-") && next()? == AWS_LOGS {
        Some(after_account)
    } else {
        return Err(KeyError::NotCloudTrailLayout);
    };
    let prefix = prefix_before_aws_logs(key, org_id.is_some())?;

    if let Some(org) = org_id {
        validate_org_id(org)?;
    }
    validate_account_id(account_id)?;
    let family = parse_family(folder)?;
    validate_region(region)?;
    let date = parse_date_folders(year, month, day)?;

    let file_name = parse_file_name(file, account_id, family.folder(), region, &family)?;
    if let FileName::Digest { end_time, .. } = &file_name {
        if end_time.date() != date {
            return Err(KeyError::DateMismatch {
                folder: date,
                file: end_time.date(),
            });
        }
    }
    Ok(TrailKey {
        prefix: prefix.to_owned(),
        org_id: org_id.map(str::to_owned),
        account_id: account_id.to_owned(),
        family,
        region: region.to_owned(),
        date,
        file: file_name,
    })
}

/// The text before `AWSLogs/`. The fixed part `AWSLogs/[org/]acct/folder/region/YYYY/MM/DD/file`
/// contains 7 slashes (8 with the org id); the next slash to the left, if any, ends
/// the prefix.
fn prefix_before_aws_logs(key: &str, has_org: bool) -> Result<&str, KeyError> {
    let slashes_in_fixed_part = if has_org { 8 } else { 7 };
    let mut slashes_seen = 0;
    for (index, byte) in key.bytes().enumerate().rev() {
        if byte != b'/' {
            continue;
        }
        slashes_seen += 1;
        if slashes_seen > slashes_in_fixed_part {
            let prefix = key.get(..index).ok_or(KeyError::NotCloudTrailLayout)?;
            if prefix.is_empty() {
                return Err(KeyError::EmptyPrefix);
            }
            return Ok(prefix);
        }
    }
    if slashes_seen == slashes_in_fixed_part {
        Ok("")
    } else {
        Err(KeyError::NotCloudTrailLayout)
    }
}

fn validate_org_id(org: &str) -> Result<(), KeyError> {
    let rest = org.strip_prefix("o-").unwrap_or("");
    let ok = (10..=32).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadOrgId(org.to_owned()))
    }
}

fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

fn validate_account_id(account: &str) -> Result<(), KeyError> {
    if is_account_id(account) {
        Ok(())
    } else {
        Err(KeyError::BadAccountId(account.to_owned()))
    }
}

/// Whether `folder` is a name CloudTrail could give a family folder:
/// `CloudTrail`, `CloudTrail-Digest` or `CloudTrail-<alphanumeric name>`.
pub fn is_family_folder(folder: &str) -> bool {
    parse_family(folder).is_ok()
}

fn parse_family(folder: &str) -> Result<Family, KeyError> {
    if folder == DIGEST_FOLDER {
        return Ok(Family::Digest);
    }
    let is_log_folder = folder == LOG_FOLDER
        || folder.strip_prefix("CloudTrail-").is_some_and(|name| {
            !name.is_empty()
                && folder.len() <= MAX_FOLDER_LEN
                && name.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if is_log_folder {
        Ok(Family::Log {
            folder: folder.to_owned(),
        })
    } else {
        Err(KeyError::UnknownFolder(folder.to_owned()))
    }
}

/// Whether `region` matches `[a-z]{2}(-[a-z]+)+-\d+` (us-east-1, us-gov-west-1,
/// ap-northeast-1, eu-central-2 …).
pub fn is_region(region: &str) -> bool {
    if region.len() > MAX_REGION_LEN {
        return false;
    }
    let parts: Vec<&str> = region.split('-').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    let middle = parts.get(1..parts.len().saturating_sub(1)).unwrap_or(&[]);
    parts.len() >= 3
        && first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && middle
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn validate_region(region: &str) -> Result<(), KeyError> {
    if is_region(region) {
        Ok(())
    } else {
        Err(KeyError::BadRegion(region.to_owned()))
    }
}

/// Whether `name` is 3..=128 characters of `[A-Za-z0-9._-]` (the characters AWS
/// allows in trail names; the finer rules about separators are not enforced so
/// that names AWS once accepted are not rejected here).
pub fn is_trail_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_fixed_digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_date_folders(year: &str, month: &str, day: &str) -> Result<NaiveDate, KeyError> {
    let bad = || KeyError::BadDate(format!("{year}/{month}/{day}"));
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let year_number = parse_fixed_digits(year).ok_or_else(bad)?;
    let month_number = parse_fixed_digits(month).ok_or_else(bad)?;
    let day_number = parse_fixed_digits(day).ok_or_else(bad)?;
    let year_signed = i32::try_from(year_number).map_err(|_| bad())?;
    NaiveDate::from_ymd_opt(year_signed, month_number, day_number).ok_or_else(bad)
}

/// Parses `YYYYMMDDTHHmm[SS]Z` with exactly the given number of time digits (4 or 6).
fn parse_compact_timestamp(text: &str, with_seconds: bool) -> Result<NaiveDateTime, KeyError> {
    let bad = || KeyError::BadTimestamp(text.to_owned());
    let expected_len = if with_seconds { 16 } else { 14 };
    if text.len() != expected_len || !text.is_ascii() {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| {
        text.get(range).and_then(parse_fixed_digits).ok_or_else(bad)
    };
    if text.get(8..9) != Some("T") || !text.ends_with('Z') {
        return Err(bad());
    }
    let year = i32::try_from(field(0..4)?).map_err(|_| bad())?;
    let date = NaiveDate::from_ymd_opt(year, field(4..6)?, field(6..8)?).ok_or_else(bad)?;
    let seconds = if with_seconds { field(13..15)? } else { 0 };
    let time = NaiveTime::from_hms_opt(field(9..11)?, field(11..13)?, seconds).ok_or_else(bad)?;
    Ok(NaiveDateTime::new(date, time))
}

fn parse_file_name(
    file: &str,
    folder_account: &str,
    folder: &str,
    folder_region: &str,
    family: &Family,
) -> Result<FileName, KeyError> {
    let bad = |reason: &'static str| KeyError::BadFileName {
        file: file.to_owned(),
        reason,
    };
    let stem = file
        .strip_suffix(GZIP_JSON_SUFFIX)
        .ok_or_else(|| bad("does not end in .json.gz"))?;
    let (file_account, rest) = stem
        .split_once('_')
        .ok_or_else(|| bad("no '_' after the account id"))?;
    validate_account_id(file_account)?;
    if file_account != folder_account {
        return Err(KeyError::AccountMismatch {
            folder: folder_account.to_owned(),
            file: file_account.to_owned(),
        });
    }
    let (file_folder, rest) = rest
        .split_once('_')
        .ok_or_else(|| bad("no '_' after the folder name"))?;
    if file_folder != folder {
        return Err(KeyError::FolderMismatch {
            folder: folder.to_owned(),
            file: file_folder.to_owned(),
        });
    }
    let (file_region, rest) = rest
        .split_once('_')
        .ok_or_else(|| bad("no '_' after the region"))?;
    validate_region(file_region)?;
    if file_region != folder_region {
        return Err(KeyError::RegionMismatch {
            folder: folder_region.to_owned(),
            file: file_region.to_owned(),
        });
    }
    match family {
        Family::Log { .. } => {
            let (stamp, unique) = rest
                .split_once('_')
                .ok_or_else(|| bad("no '_' after the timestamp"))?;
            let delivered_at = parse_compact_timestamp(stamp, false)?;
            let unique_ok = !unique.is_empty()
                && unique.len() <= MAX_UNIQUE_LEN
                && unique.bytes().all(|b| b.is_ascii_alphanumeric());
            if !unique_ok {
                return Err(bad("unique string is not 1 to 64 ASCII letters and digits"));
            }
            Ok(FileName::Log {
                account_id: file_account.to_owned(),
                region: file_region.to_owned(),
                delivered_at,
                unique: unique.to_owned(),
            })
        }
        Family::Digest => {
            let (rest, backfill) = match rest.strip_suffix(BACKFILL_SUFFIX) {
                Some(shorter) => (shorter, true),
                None => (rest, false),
            };
            let (trail_and_home, stamp) = rest
                .rsplit_once('_')
                .ok_or_else(|| bad("no '_' before the timestamp"))?;
            let end_time = parse_compact_timestamp(stamp, true)?;
            let (trail_name, home_region) = trail_and_home
                .rsplit_once('_')
                .ok_or_else(|| bad("no '_' between trail name and home region"))?;
            validate_region(home_region)?;
            if !is_trail_name(trail_name) {
                return Err(KeyError::BadTrailName(trail_name.to_owned()));
            }
            Ok(FileName::Digest {
                account_id: file_account.to_owned(),
                region: file_region.to_owned(),
                trail_name: trail_name.to_owned(),
                home_region: home_region.to_owned(),
                end_time,
                backfill,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ymd_hms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .expect("valid test time")
    }

    #[test]
    fn parses_spec_log_example() {
        let key = "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/01/111122223333_CloudTrail_us-east-2_20150801T0210Z_Mu0KsOhtH1ar15ZZ.json.gz";
        let parsed = parse_trail_key(key).expect("valid");
        assert_eq!(parsed.prefix, "");
        assert_eq!(parsed.org_id, None);
        assert_eq!(parsed.account_id, "111122223333");
        assert_eq!(
            parsed.family,
            Family::Log {
                folder: "CloudTrail".into()
            }
        );
        assert_eq!(parsed.region, "us-east-2");
        assert_eq!(
            parsed.date,
            NaiveDate::from_ymd_opt(2015, 8, 1).expect("date")
        );
        assert_eq!(
            parsed.file,
            FileName::Log {
                account_id: "111122223333".into(),
                region: "us-east-2".into(),
                delivered_at: ymd_hms(2015, 8, 1, 2, 10, 0),
                unique: "Mu0KsOhtH1ar15ZZ".into(),
            }
        );
        assert!(!parsed.is_digest());
        assert!(parsed.file_date_matches_folder());
        assert_eq!(
            parsed.partition_prefix(),
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/01/"
        );
        assert_eq!(parsed.to_key(), key);
    }

    #[test]
    fn parses_real_multi_region_digest_key() {
        let key = "AWSLogs/327878933619/CloudTrail-Digest/ap-northeast-1/2023/10/15/327878933619_CloudTrail-Digest_ap-northeast-1_llm-guard-trail_us-west-2_20231015T230404Z.json.gz";
        let parsed = parse_trail_key(key).expect("valid");
        assert!(parsed.is_digest());
        assert!(!parsed.is_backfill());
        assert_eq!(parsed.region, "ap-northeast-1");
        assert_eq!(
            parsed.file,
            FileName::Digest {
                account_id: "327878933619".into(),
                region: "ap-northeast-1".into(),
                trail_name: "llm-guard-trail".into(),
                home_region: "us-west-2".into(),
                end_time: ymd_hms(2023, 10, 15, 23, 4, 4),
                backfill: false,
            }
        );
        assert_eq!(parsed.to_key(), key);
    }

    #[test]
    fn aws_cli_date_extraction_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/aws-cli-test-vectors.json"))
                .expect("json");
        let cases = vectors["digest_key_date_extraction"]["vectors"]
            .as_array()
            .expect("array");
        assert_eq!(cases.len(), 2);
        for case in cases {
            let key = case["key"].as_str().expect("key");
            let parsed = parse_trail_key(key).expect("valid");
            let FileName::Digest {
                end_time,
                backfill,
                trail_name,
                ..
            } = &parsed.file
            else {
                panic!("not a digest: {key}");
            };
            assert_eq!(
                end_time.format("%Y%m%dT%H%M%SZ").to_string(),
                case["date"].as_str().expect("date")
            );
            assert_eq!(*backfill, case["backfill"].as_bool().expect("bool"));
            assert_eq!(parsed.is_backfill(), *backfill);
            assert_eq!(trail_name, "foo");
            assert_eq!(parsed.to_key(), key);
        }
    }

    #[test]
    fn org_layout_with_two_segment_prefix() {
        let key = "audit/trails/AWSLogs/o-abcdef1234/210987654321/CloudTrail-Digest/us-gov-west-1/2024/02/29/210987654321_CloudTrail-Digest_us-gov-west-1_org_trail.v2-x_us-east-1_20240229T000000Z_backfill.json.gz";
        let parsed = parse_trail_key(key).expect("valid");
        assert_eq!(parsed.prefix, "audit/trails");
        assert_eq!(parsed.org_id.as_deref(), Some("o-abcdef1234"));
        assert_eq!(parsed.account_id, "210987654321");
        assert!(parsed.is_backfill());
        let FileName::Digest {
            trail_name,
            home_region,
            ..
        } = &parsed.file
        else {
            panic!("not a digest");
        };
        assert_eq!(trail_name, "org_trail.v2-x");
        assert_eq!(home_region, "us-east-1");
        assert_eq!(
            parsed.partition_prefix(),
            "audit/trails/AWSLogs/o-abcdef1234/210987654321/CloudTrail-Digest/us-gov-west-1/2024/02/29/"
        );
        assert_eq!(parsed.to_key(), key);
    }

    #[test]
    fn trail_names_with_separators_and_region_like_parts() {
        for trail in [
            "a_b_c",
            "my.trail",
            "x-y-z",
            "t_us-east-1",
            "___",
            "A.B_C-D",
        ] {
            let parts = DigestKeyParts {
                prefix: "",
                org_id: None,
                account_id: "123456789012",
                region: "eu-west-1",
                trail_name: trail,
                home_region: "eu-central-1",
            };
            let key = digest_key(&parts, ymd_hms(2020, 1, 2, 3, 4, 5), false);
            let parsed = parse_trail_key(&key).expect("valid");
            let FileName::Digest {
                trail_name,
                home_region,
                ..
            } = &parsed.file
            else {
                panic!("not a digest");
            };
            assert_eq!(trail_name, trail);
            assert_eq!(home_region, "eu-central-1");
        }
    }

    #[test]
    fn insight_and_other_sibling_folders() {
        let key = "p/AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2019/12/17/123456789012_CloudTrail-Insight_us-east-1_20191217T1740Z_abcdEFGH12345678.json.gz";
        let parsed = parse_trail_key(key).expect("valid");
        assert_eq!(
            parsed.family,
            Family::Log {
                folder: "CloudTrail-Insight".into()
            }
        );
        assert_eq!(parsed.to_key(), key);
        let network = key.replace("CloudTrail-Insight", "CloudTrail-NetworkActivity");
        assert!(parse_trail_key(&network).is_ok());
    }

    #[test]
    fn prefix_may_contain_awslogs() {
        let key = "AWSLogs/AWSLogs/123456789012/CloudTrail/us-east-1/2019/12/17/123456789012_CloudTrail_us-east-1_20191217T1740Z_abcdEFGH12345678.json.gz";
        let parsed = parse_trail_key(key).expect("valid");
        assert_eq!(parsed.prefix, "AWSLogs");
        assert_eq!(parsed.to_key(), key);
    }

    #[test]
    fn rejections_are_typed() {
        let good = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2015/08/16/123456789012_CloudTrail-Digest_us-east-1_foo_us-east-1_20150816T230550Z.json.gz";
        assert!(parse_trail_key(good).is_ok());
        let cases: Vec<(String, KeyError)> = vec![
            (
                good.replacen("123456789012_", "123456789013_", 1),
                KeyError::AccountMismatch {
                    folder: "123456789012".into(),
                    file: "123456789013".into(),
                },
            ),
            (
                good.replace("2015/08/16", "2015/08/17"),
                KeyError::DateMismatch {
                    folder: NaiveDate::from_ymd_opt(2015, 8, 17).expect("date"),
                    file: NaiveDate::from_ymd_opt(2015, 8, 16).expect("date"),
                },
            ),
            (
                good.replacen("us-east-1/", "us-west-2/", 1),
                KeyError::RegionMismatch {
                    folder: "us-west-2".into(),
                    file: "us-east-1".into(),
                },
            ),
            (
                good.replace("/123456789012/", "/12345678901/"),
                KeyError::BadAccountId("12345678901".into()),
            ),
            (
                good.replace("Digest/us-east-1", "Digest/useast1"),
                KeyError::BadRegion("useast1".into()),
            ),
            (
                good.replace("2015/08/16", "2015/02/30"),
                KeyError::BadDate("2015/02/30".into()),
            ),
            (
                good.replace("230550Z", "236050Z"),
                KeyError::BadTimestamp("20150816T236050Z".into()),
            ),
            (
                good.replace("_foo_", "_fo_"),
                KeyError::BadTrailName("fo".into()),
            ),
            (
                good.replace("_foo_", "_f*o_"),
                KeyError::BadTrailName("f*o".into()),
            ),
            (
                good.replace(".json.gz", ".json"),
                KeyError::BadFileName {
                    file: "123456789012_CloudTrail-Digest_us-east-1_foo_us-east-1_20150816T230550Z.json".into(),
                    reason: "does not end in .json.gz",
                },
            ),
            (
                good.replace("CloudTrail-Digest/", "CloudTrailX/"),
                KeyError::UnknownFolder("CloudTrailX".into()),
            ),
            (
                good.replace("CloudTrail-Digest/", "CloudTrail-Digest2/"),
                KeyError::FolderMismatch {
                    folder: "CloudTrail-Digest2".into(),
                    file: "CloudTrail-Digest".into(),
                },
            ),
            (
                good.replace("AWSLogs/", "AWSLogs/o-short/"),
                KeyError::BadOrgId("o-short".into()),
            ),
            (format!("/{good}"), KeyError::EmptyPrefix),
            (
                good.replace("AWSLogs/", "AWSLog/"),
                KeyError::NotCloudTrailLayout,
            ),
            ("".into(), KeyError::NotCloudTrailLayout),
            (
                good.replace("_us-east-1_2015", "_useast1_2015"),
                KeyError::BadRegion("useast1".into()),
            ),
            (
                good.replace("_CloudTrail-Digest_", "_CloudTrail_"),
                KeyError::FolderMismatch {
                    folder: "CloudTrail-Digest".into(),
                    file: "CloudTrail".into(),
                },
            ),
        ];
        for (key, expected) in cases {
            assert_eq!(parse_trail_key(&key), Err(expected), "key {key}");
        }
    }

    #[test]
    fn region_shapes() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "ap-northeast-1",
            "eu-central-2",
            "cn-north-1",
        ] {
            assert!(is_region(good), "{good}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "us-1",
            "USA-east-1",
            "us-east-1a",
            "us--1",
            "u-east-1",
            "us-east-",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    fn region_strategy() -> impl Strategy<Value = String> {
        "[a-z]{2}(-[a-z]{1,9}){1,2}-[0-9]{1,2}"
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(key in any::<String>()) {
            let _ = parse_trail_key(&key);
        }

        #[test]
        fn key_like_strings_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("AWSLogs".to_string()),
                    Just("o-abcdefghij".to_string()),
                    Just("123456789012".to_string()),
                    Just("CloudTrail-Digest".to_string()),
                    Just("CloudTrail".to_string()),
                    Just("us-east-1".to_string()),
                    Just("2015".to_string()),
                    Just("08".to_string()),
                    Just("123456789012_CloudTrail-Digest_us-east-1_a_us-east-1_20150816T230550Z_backfill.json.gz".to_string()),
                    "[ -~é_]{0,12}",
                ],
                0..14,
            )
        ) {
            let key = parts.join("/");
            if let Ok(parsed) = parse_trail_key(&key) {
                prop_assert_eq!(parsed.to_key(), key);
            }
        }

        #[test]
        fn digest_keys_round_trip(
            prefix in prop_oneof![Just(String::new()), "[a-zA-Z0-9_.-]{1,10}(/[a-zA-Z0-9_.-]{1,10}){0,3}"],
            org in proptest::option::of("o-[a-z0-9]{10,32}"),
            account in "[0-9]{12}",
            region in region_strategy(),
            home in region_strategy(),
            trail in "[A-Za-z0-9._-]{3,128}",
            seconds in 0i64..253_402_300_799, // up to 9999-12-31T23:59:59
            backfill in any::<bool>(),
        ) {
            let end_time = chrono::DateTime::from_timestamp(seconds, 0).expect("in range").naive_utc();
            let parts = DigestKeyParts {
                prefix: &prefix,
                org_id: org.as_deref(),
                account_id: &account,
                region: &region,
                trail_name: &trail,
                home_region: &home,
            };
            let key = digest_key(&parts, end_time, backfill);
            let parsed = parse_trail_key(&key).map_err(|e| TestCaseError::fail(format!("{key}: {e}")))?;
            prop_assert_eq!(&parsed.prefix, &prefix);
            prop_assert_eq!(parsed.org_id.as_deref(), org.as_deref());
            prop_assert_eq!(&parsed.account_id, &account);
            prop_assert_eq!(&parsed.region, &region);
            prop_assert_eq!(parsed.date, end_time.date());
            prop_assert_eq!(parsed.is_backfill(), backfill);
            prop_assert_eq!(
                &parsed.file,
                &FileName::Digest {
                    account_id: account.clone(),
                    region: region.clone(),
                    trail_name: trail.clone(),
                    home_region: home.clone(),
                    end_time,
                    backfill,
                }
            );
            prop_assert_eq!(parsed.to_key(), key);
        }
    }
}
