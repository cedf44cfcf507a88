//! Which account a CloudTrail body claims: the `recipientAccountId` of each
//! record of a log file (docs/cloudtrail-format.md §1.1) and the `awsAccountId`
//! of a digest.
//!
//! [`ClaimScanner`] is pushed the inflated bytes chunk by chunk, as the copy
//! inflates them, and never holds the body: it keeps only the claims it finds
//! (at most [`MAX_CLAIMED`] per `Records` array, each at most
//! [`MAX_CLAIM_CHARS`] characters) and one bit per level of nesting. Every
//! other field is checked for JSON syntax and skipped without being decoded or
//! allocated.
//!
//! It is exactly as strict as the `serde_json` reader it replaced (kept as
//! the test oracle in `claims/oracle.rs`): JSON syntax everywhere (escapes,
//! control characters in strings, number grammar, literals, commas, nothing
//! but whitespace after the object); UTF-8 and paired surrogates in the keys
//! of the top object, of each record and of an object given as the claim, and
//! in a claimed string; a claimed number must be within `f64`'s range; the
//! body must be an object, its `Records` an array of objects (several
//! `Records` keys: the union of their claims), a duplicated claim key in one
//! record: its last value counts.

use std::collections::BTreeSet;

#[cfg(test)]
mod oracle;

/// Distinct claimed accounts kept per `Records` array; one other than the
/// reader's own is enough for a finding.
pub const MAX_CLAIMED: usize = 64;

/// Longest claimed value kept as is; a longer one is kept truncated (it is
/// no account id, and still a claim of another account).
pub const MAX_CLAIM_CHARS: usize = 64;

/// What kind of body is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// A log file: `{"Records": [ {record}, ... ]}`.
    Log,
    /// A digest file: `{"awsAccountId": ...}`.
    Digest,
}

/// What a body claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claims {
    /// The distinct string `recipientAccountId`s of a log file's records.
    Log(BTreeSet<String>),
    /// A digest's `awsAccountId`, when it is a string.
    Digest(Option<String>),
}

/// Why a body is not what [`BodyKind`] says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct ClaimsError {
    pub what: &'static str,
    /// Offset in the inflated content of the byte that was refused (its
    /// length when the content ended too early).
    pub offset: u64,
}

/// Scans a whole body held in memory.
pub fn scan(kind: BodyKind, body: &[u8]) -> Result<Claims, ClaimsError> {
    let mut scanner = ClaimScanner::new(kind);
    scanner.update(body);
    scanner.finish()
}

/// The role of an open object or array, which decides what its keys and
/// values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The body's object.
    Top,
    /// A `Records` array of a log.
    Records,
    /// One record of a `Records` array.
    Record,
    /// An object given as the claim: strict keys, skipped values.
    ClaimObject,
    /// An array given as the claim: skipped values.
    ClaimArray,
}

impl Role {
    fn is_object(self) -> bool {
        matches!(self, Role::Top | Role::Record | Role::ClaimObject)
    }
}

/// What may come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The body's value.
    Start,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:`, or `,` in an array: a value.
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After a value inside a container: `,` or the closing bracket.
    AfterValue,
    /// After the body's value: whitespace only.
    End,
}

/// What a string being read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrUse {
    /// A key to compare with the field wanted at this level.
    Key,
    /// A key that is only validated.
    StrictKey,
    /// The claimed value: validated and kept.
    Claim,
    /// Anything else: syntax only.
    Skipped,
}

/// Where inside an escape sequence a string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After `\`.
    Backslash,
    /// Reading the hex digits of `\u` (`read` of 4 so far, value `value`).
    Hex {
        read: u8,
        value: u16,
    },
    /// After a leading surrogate, before the `\` of its trailing one.
    PairBackslash {
        high: u16,
    },
    /// After a leading surrogate and `\`, before the `u`.
    PairU {
        high: u16,
    },
    /// Reading the hex digits of the trailing surrogate.
    PairHex {
        high: u16,
        read: u8,
        value: u16,
    },
}

/// Where inside a number it is (the JSON number grammar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    /// After `-`: a digit must follow.
    Minus,
    /// A leading `0`: no digit may follow.
    Zero,
    Int,
    /// After `.`: a digit must follow.
    Dot,
    Fraction,
    /// After `e`: a sign or a digit.
    ExponentStart,
    /// After the exponent's sign: a digit must follow.
    ExponentSign,
    Exponent,
}

impl Num {
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Fraction | Num::Exponent)
    }
}

/// The token being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    None,
    Str {
        used: StrUse,
        escape: Escape,
    },
    Number {
        state: Num,
        /// A claimed number: its value must fit an `f64`.
        claimed: bool,
    },
    /// The rest of `true`, `false` or `null`.
    Literal {
        rest: &'static [u8],
    },
}

/// Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, at
/// most U+10FFFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Utf8 {
    need: u8,
    lower: u8,
    upper: u8,
}

impl Utf8 {
    const START: Utf8 = Utf8 {
        need: 0,
        lower: 0x80,
        upper: 0xbf,
    };

    fn push(&mut self, byte: u8) -> bool {
        if self.need > 0 {
            if byte < self.lower || byte > self.upper {
                return false;
            }
            self.need -= 1;
            self.lower = 0x80;
            self.upper = 0xbf;
            return true;
        }
        let (need, lower, upper) = match byte {
            0x00..=0x7f => return true,
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xe1..=0xec | 0xee..=0xef => (2, 0x80, 0xbf),
            0xed => (2, 0x80, 0x9f),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            _ => return false,
        };
        *self = Utf8 { need, lower, upper };
        true
    }
}

/// A claimed number's literal: kept whole when short; otherwise summarized
/// (first significant digits and decimal magnitude), which decides its range
/// the same way except within 10^-30 of `f64::MAX`.
#[derive(Debug, Clone, Copy)]
struct NumberText {
    literal: [u8; NumberText::KEPT],
    len: usize,
    negative: bool,
    /// Significant digits (from the first non-zero one), at most `DIGITS`.
    digits: [u8; NumberText::DIGITS],
    digit_count: usize,
    /// Digits of the integer part, and zeros after the point before the
    /// first significant digit when the integer part is 0.
    int_digits: i64,
    leading_fraction_zeros: i64,
    seen_nonzero: bool,
    in_fraction: bool,
    exponent: i64,
    exponent_negative: bool,
}

impl NumberText {
    const KEPT: usize = 64;
    const DIGITS: usize = 30;
    /// Exponents are saturated here: far beyond any `f64`.
    const EXPONENT_CAP: i64 = 1_000_000_000_000;

    fn new() -> NumberText {
        NumberText {
            literal: [0; NumberText::KEPT],
            len: 0,
            negative: false,
            digits: [0; NumberText::DIGITS],
            digit_count: 0,
            int_digits: 0,
            leading_fraction_zeros: 0,
            seen_nonzero: false,
            in_fraction: false,
            exponent: 0,
            exponent_negative: false,
        }
    }

    fn push(&mut self, byte: u8, state: Num) {
        if let Some(slot) = self.literal.get_mut(self.len) {
            *slot = byte;
        }
        self.len = self.len.saturating_add(1);
        match (state, byte) {
            (Num::Minus, b'-') => self.negative = true,
            (Num::Dot, b'.') => self.in_fraction = true,
            (Num::ExponentSign, b'-') => self.exponent_negative = true,
            (Num::Exponent, digit @ b'0'..=b'9') => {
                self.exponent =
                    (self.exponent * 10 + i64::from(digit - b'0')).min(NumberText::EXPONENT_CAP);
            }
            (Num::Zero | Num::Int | Num::Fraction, digit @ b'0'..=b'9') => {
                if !self.in_fraction {
                    self.int_digits = self.int_digits.saturating_add(1);
                } else if !self.seen_nonzero && digit == b'0' {
                    self.leading_fraction_zeros = self.leading_fraction_zeros.saturating_add(1);
                }
                if digit != b'0' {
                    self.seen_nonzero = true;
                }
                if self.seen_nonzero && self.digit_count < NumberText::DIGITS {
                    self.digits[self.digit_count] = digit;
                    self.digit_count += 1;
                }
            }
            _ => {}
        }
    }

    /// Whether `serde_json` reads the number as a finite value.
    fn in_range(&self) -> bool {
        if self.len <= NumberText::KEPT {
            return serde_json::from_slice::<serde_json::Number>(&self.literal[..self.len]).is_ok();
        }
        if !self.seen_nonzero {
            return true;
        }
        // 0.d1d2...dn × 10^magnitude.
        let magnitude = if self.digits_start_in_fraction() {
            -self.leading_fraction_zeros
        } else {
            self.int_digits
        };
        let exponent = if self.exponent_negative {
            -self.exponent
        } else {
            self.exponent
        };
        let mut text = [0u8; 80];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        let written =
            std::io::Write::write_all(&mut cursor, if self.negative { b"-0." } else { b"0." })
                .and_then(|()| {
                    std::io::Write::write_all(&mut cursor, &self.digits[..self.digit_count])
                })
                .and_then(|()| {
                    std::io::Write::write_fmt(
                        &mut cursor,
                        format_args!("e{}", magnitude + exponent),
                    )
                });
        let end = usize::try_from(cursor.position()).unwrap_or(0);
        written.is_ok() && serde_json::from_slice::<serde_json::Number>(&text[..end]).is_ok()
    }

    /// Whether the integer part is the single digit 0.
    fn digits_start_in_fraction(&self) -> bool {
        self.literal.get(usize::from(self.negative)) == Some(&b'0')
    }
}

/// Open ignored containers deeper than the last role: one bit each (object
/// or array), the first 256 levels inline.
#[derive(Debug, Clone)]
struct BitStack {
    inline: [u64; 4],
    spilled: Vec<u64>,
    depth: usize,
}

impl BitStack {
    fn new() -> BitStack {
        BitStack {
            inline: [0; 4],
            spilled: Vec::new(),
            depth: 0,
        }
    }

    fn word(&mut self, index: usize) -> &mut u64 {
        let inline = self.inline.len();
        if index < inline {
            &mut self.inline[index]
        } else {
            let spilled = index - inline;
            if self.spilled.len() <= spilled {
                self.spilled.resize(spilled + 1, 0);
            }
            &mut self.spilled[spilled]
        }
    }

    fn push(&mut self, object: bool) {
        let depth = self.depth;
        let word = self.word(depth / 64);
        let bit = 1u64 << (depth % 64);
        if object {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        self.depth += 1;
    }

    fn top_is_object(&mut self) -> Option<bool> {
        let depth = self.depth.checked_sub(1)?;
        let word = *self.word(depth / 64);
        Some(word & (1u64 << (depth % 64)) != 0)
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

/// Length of the run of `bytes` before the first quote, backslash or
/// control byte (eight bytes at a time).
#[inline]
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES << 7;
    let mut index = 0;
    while let Some(word) = bytes.get(index..index + 8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let chars = u64::from_le_bytes(eight);
        let control = chars.wrapping_sub(ONES * 0x20) & !chars;
        let quote = chars ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = chars ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            // The lowest flagged byte is a true match (borrows only run upward).
            return index + (found.trailing_zeros() / 8) as usize;
        }
        index += 8;
    }
    index
        + bytes[index..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(bytes.len() - index)
}

/// Where a skipped string whose content starts at `chunk[index]` ends (just
/// after its closing quote), when it is valid and whole in `chunk`.
#[inline]
fn skipped_string_end(chunk: &[u8], mut index: usize) -> Option<usize> {
    loop {
        index += plain_run(chunk.get(index..)?);
        match chunk.get(index)? {
            b'"' => return Some(index + 1),
            b'\\' => match chunk.get(index + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => index += 2,
                b'u' if chunk
                    .get(index + 2..index + 6)?
                    .iter()
                    .all(u8::is_ascii_hexdigit) =>
                {
                    index += 6;
                }
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// Where a number starting at `chunk[index]` ends, when it follows the JSON
/// grammar and a byte after it in `chunk` shows it complete.
fn number_end(chunk: &[u8], mut index: usize) -> Option<usize> {
    let digits = |index: usize| {
        chunk[index..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(chunk.len() - index)
    };
    if chunk[index] == b'-' {
        index += 1;
    }
    match chunk.get(index)? {
        b'0' => index += 1,
        b'1'..=b'9' => index += digits(index),
        _ => return None,
    }
    if chunk.get(index)? == &b'.' {
        let run = digits(index + 1);
        if run == 0 {
            return None;
        }
        index += 1 + run;
    }
    if matches!(chunk.get(index)?, b'e' | b'E') {
        index += 1;
        if matches!(chunk.get(index)?, b'+' | b'-') {
            index += 1;
        }
        let run = digits(index);
        if run == 0 {
            return None;
        }
        index += run;
    }
    // The byte after the number must be in this chunk.
    chunk.get(index)?;
    Some(index)
}

/// Where a body failed (index in the chunk) and why.
type Fail = (usize, &'static str);

/// Push scanner of one body; see the module docs. Feed the inflated bytes
/// with [`ClaimScanner::update`], then call [`ClaimScanner::finish`].
#[derive(Debug, Clone)]
pub struct ClaimScanner {
    kind: BodyKind,
    offset: u64,
    error: Option<ClaimsError>,
    expect: Expect,
    token: Token,
    roles: [Role; 4],
    role_depth: usize,
    ignored: BitStack,
    /// The key just read is the field wanted at its level.
    key_matched: bool,
    /// Comparing a key being read with the wanted field.
    key_pos: usize,
    key_equal: bool,
    utf8: Utf8,
    /// The claim of the current record (log) or of the body (digest): set
    /// by each occurrence of the claim field, the last one counts.
    pending: Vec<u8>,
    pending_set: bool,
    pending_chars: usize,
    pending_truncated: bool,
    number: NumberText,
    records_seen: bool,
    /// The current `Records` array's claims, and the union of all arrays'.
    current: BTreeSet<String>,
    all: BTreeSet<String>,
}

impl ClaimScanner {
    pub fn new(kind: BodyKind) -> ClaimScanner {
        ClaimScanner {
            kind,
            offset: 0,
            error: None,
            expect: Expect::Start,
            token: Token::None,
            roles: [Role::Top; 4],
            role_depth: 0,
            ignored: BitStack::new(),
            key_matched: false,
            key_pos: 0,
            key_equal: false,
            utf8: Utf8::START,
            pending: Vec::new(),
            pending_set: false,
            pending_chars: 0,
            pending_truncated: false,
            number: NumberText::new(),
            records_seen: false,
            current: BTreeSet::new(),
            all: BTreeSet::new(),
        }
    }

    /// The field whose value is the claim (or, for a log's top object, the
    /// records) at the current level.
    fn wanted(&self) -> &'static [u8] {
        match (self.kind, self.role()) {
            (BodyKind::Log, Some(Role::Top)) => b"Records",
            (BodyKind::Log, Some(Role::Record)) => b"recipientAccountId",
            (BodyKind::Digest, Some(Role::Top)) => b"awsAccountId",
            _ => b"",
        }
    }

    /// The role of the innermost open container, `None` when it is an
    /// ignored one (or none is open).
    fn role(&self) -> Option<Role> {
        if self.ignored.depth > 0 {
            return None;
        }
        self.role_depth
            .checked_sub(1)
            .and_then(|index| self.roles.get(index))
            .copied()
    }

    /// Whether the innermost open container is an object.
    fn in_object(&mut self) -> bool {
        match self.ignored.top_is_object() {
            Some(object) => object,
            None => self.role().is_some_and(Role::is_object),
        }
    }

    /// Feeds the next inflated bytes (any size, including empty).
    pub fn update(&mut self, chunk: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let mut index = 0;
        while index < chunk.len() {
            match self.step(chunk, index) {
                Ok(next) => index = next,
                Err((at, what)) => {
                    self.error = Some(ClaimsError {
                        what,
                        offset: self.offset + at as u64,
                    });
                    return;
                }
            }
        }
        self.offset += chunk.len() as u64;
    }

    /// Ends the body and returns its claims.
    pub fn finish(mut self) -> Result<Claims, ClaimsError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let eof = |what| {
            Err(ClaimsError {
                what,
                offset: self.offset,
            })
        };
        if self.expect != Expect::End || self.token != Token::None {
            return eof("unexpected end of the JSON body");
        }
        match self.kind {
            BodyKind::Log if !self.records_seen => eof("missing field `Records`"),
            BodyKind::Log => Ok(Claims::Log(self.all)),
            BodyKind::Digest => Ok(Claims::Digest(self.take_pending())),
        }
    }

    fn take_pending(&mut self) -> Option<String> {
        if !self.pending_set {
            return None;
        }
        self.pending_set = false;
        // Validated as UTF-8 while read.
        let mut text = String::from_utf8_lossy(&self.pending).into_owned();
        if self.pending_truncated {
            text.push('…');
        }
        Some(text)
    }

    /// Adds the record's claim to the current array's (without allocating
    /// unless it is new).
    fn keep_record_claim(&mut self) {
        if !self.pending_set {
            return;
        }
        self.pending_set = false;
        let mut buffer = [0u8; 4 * MAX_CLAIM_CHARS + 3];
        let len = self.pending.len();
        let mut end = len;
        if let Some(slot) = buffer.get_mut(..len) {
            slot.copy_from_slice(&self.pending);
        }
        if self.pending_truncated {
            if let Some(slot) = buffer.get_mut(end..end + 3) {
                slot.copy_from_slice("…".as_bytes());
                end += 3;
            }
        }
        let Some(Ok(claim)) = buffer.get(..end).map(std::str::from_utf8) else {
            return;
        };
        if !self.current.contains(claim) && self.current.len() < MAX_CLAIMED {
            self.current.insert(claim.to_owned());
        }
    }

    /// One step from `chunk[index]`; returns the index to go on from.
    fn step(&mut self, chunk: &[u8], index: usize) -> Result<usize, Fail> {
        match self.token {
            Token::Str { used, escape } => self.string(chunk, index, used, escape),
            Token::Number {
                state: state @ (Num::Int | Num::Fraction | Num::Exponent),
                claimed: false,
            } if chunk[index].is_ascii_digit() => {
                let digits = chunk[index..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(chunk.len() - index);
                self.token = Token::Number {
                    state,
                    claimed: false,
                };
                Ok(index + digits)
            }
            Token::Number { state, claimed } => {
                let byte = chunk[index];
                match self.number_byte(state, byte) {
                    Some(next) => {
                        if claimed {
                            self.number.push(byte, next);
                        }
                        self.token = Token::Number {
                            state: next,
                            claimed,
                        };
                        Ok(index + 1)
                    }
                    None if state.complete() => {
                        if claimed && !self.number.in_range() {
                            return Err((index, "number out of range"));
                        }
                        self.token = Token::None;
                        self.value_done();
                        // The byte is read again as what follows the number.
                        Ok(index)
                    }
                    None => Err((index, "invalid number")),
                }
            }
            Token::Literal { rest } => match rest.split_first() {
                Some((&want, tail)) if chunk[index] == want => {
                    if tail.is_empty() {
                        self.token = Token::None;
                        self.value_done();
                    } else {
                        self.token = Token::Literal { rest: tail };
                    }
                    Ok(index + 1)
                }
                _ => Err((index, "expected ident")),
            },
            Token::None => self.structure(chunk, index),
        }
    }

    fn number_byte(&self, state: Num, byte: u8) -> Option<Num> {
        Some(match (state, byte) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Zero | Num::Int | Num::Fraction, b'e' | b'E') => Num::ExponentStart,
            (Num::Dot | Num::Fraction, b'0'..=b'9') => Num::Fraction,
            (Num::ExponentStart, b'+' | b'-') => Num::ExponentSign,
            (Num::ExponentStart | Num::ExponentSign | Num::Exponent, b'0'..=b'9') => Num::Exponent,
            _ => return None,
        })
    }

    /// Between tokens: whitespace, punctuation, the start of a value or key.
    fn structure(&mut self, chunk: &[u8], mut index: usize) -> Result<usize, Fail> {
        loop {
            index = self.skim(chunk, index);
            let Some(&byte) = chunk.get(index) else {
                return Ok(index);
            };
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                self.structure_byte(byte).map_err(|what| (index, what))?;
            }
            index += 1;
            if self.token != Token::None {
                return Ok(index);
            }
        }
    }

    /// The fast path between tokens: takes whole the common tokens that
    /// need no decoding (whitespace, punctuation, skipped values, and keys
    /// that are plain ASCII), exactly as the byte-by-byte path would, and
    /// stops before the first byte it does not handle: anything unusual
    /// (an escape it cannot see whole, a token cut by the chunk's end, a
    /// claim, a role's container, an error), which the byte-by-byte path
    /// then reads from the same state.
    fn skim(&mut self, chunk: &[u8], mut index: usize) -> usize {
        while let Some(&byte) = chunk.get(index) {
            if matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                index += 1;
                continue;
            }
            let next = match self.expect {
                Expect::ObjectFirst | Expect::Key => match byte {
                    b'"' => self.skim_key(chunk, index),
                    b'}' => self.skim_close(chunk, index, true),
                    _ => None,
                },
                Expect::Colon => (byte == b':').then(|| {
                    self.expect = Expect::Value;
                    index + 1
                }),
                Expect::Value | Expect::ArrayFirst => match byte {
                    b']' => self.skim_close(chunk, index, false),
                    _ if self.skips_values() => self.skim_value(chunk, index, byte),
                    _ => None,
                },
                Expect::AfterValue => match byte {
                    b',' => Some(self.comma(chunk, index)),
                    b'}' | b']' => self.skim_close(chunk, index, byte == b'}'),
                    _ => None,
                },
                Expect::Start | Expect::End => None,
            };
            match next {
                Some(next) => index = next,
                None => return index,
            }
        }
        index
    }

    /// A key at `chunk[index]` (its quote), and the colon when it follows at
    /// once; `None` unless it needs no decoding and is whole in `chunk`.
    fn skim_key(&mut self, chunk: &[u8], index: usize) -> Option<usize> {
        let end = match self.role() {
            None => skipped_string_end(chunk, index + 1)?,
            Some(Role::Top | Role::Record) => {
                // Only a key of plain ASCII: nothing to decode.
                let key = &chunk[index + 1..];
                let key = &key[..plain_run(key)];
                let end = index + 1 + key.len();
                if chunk.get(end) != Some(&b'"') || !key.is_ascii() {
                    return None;
                }
                self.key_matched = key == self.wanted();
                end + 1
            }
            _ => return None,
        };
        if chunk.get(end) == Some(&b':') {
            self.expect = Expect::Value;
            Some(end + 1)
        } else {
            self.expect = Expect::Colon;
            Some(end)
        }
    }

    /// A skipped value starting with `byte` at `chunk[index]`: a scalar
    /// whole in `chunk` (and the comma when it follows at once), or the
    /// opening of a container.
    fn skim_value(&mut self, chunk: &[u8], index: usize, byte: u8) -> Option<usize> {
        let end = match byte {
            b'"' => skipped_string_end(chunk, index + 1)?,
            b'-' | b'0'..=b'9' => number_end(chunk, index)?,
            b't' | b'f' | b'n' => {
                let literal: &[u8] = match byte {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if chunk.get(index..index + literal.len()) != Some(literal) {
                    return None;
                }
                index + literal.len()
            }
            b'{' | b'[' => {
                self.key_matched = false;
                let object = byte == b'{';
                self.ignored.push(object);
                self.expect = if object {
                    Expect::ObjectFirst
                } else {
                    Expect::ArrayFirst
                };
                return Some(index + 1);
            }
            _ => return None,
        };
        self.key_matched = false;
        self.value_done();
        Some(self.comma(chunk, end))
    }

    /// The closing bracket at `chunk[index]` of an ignored container (and
    /// the comma when it follows at once), when it is valid here.
    fn skim_close(&mut self, chunk: &[u8], index: usize, object: bool) -> Option<usize> {
        let first = if object {
            Expect::ObjectFirst
        } else {
            Expect::ArrayFirst
        };
        if self.ignored.depth == 0
            || (self.expect != first && self.expect != Expect::AfterValue)
            || self.in_object() != object
        {
            return None;
        }
        self.ignored.pop();
        self.value_done();
        Some(self.comma(chunk, index + 1))
    }

    /// After a value, at `chunk[index]`: takes the comma that usually
    /// follows at once.
    fn comma(&mut self, chunk: &[u8], index: usize) -> usize {
        if chunk.get(index) != Some(&b',') || self.expect != Expect::AfterValue {
            return index;
        }
        self.expect = if self.in_object() {
            Expect::Key
        } else {
            Expect::Value
        };
        index + 1
    }

    /// Whether a value starting here is only checked for syntax (not the
    /// body, a `Records` array, a record or a claim).
    fn skips_values(&self) -> bool {
        if self.ignored.depth > 0 {
            return true;
        }
        match self.role() {
            Some(Role::ClaimObject | Role::ClaimArray) => true,
            // The key just read is `Records` (log) or the claim (digest).
            Some(Role::Top) => !self.key_matched,
            Some(Role::Record) => self.kind != BodyKind::Log || !self.key_matched,
            Some(Role::Records) | None => false,
        }
    }

    /// One byte of punctuation or the first of a value or key.
    fn structure_byte(&mut self, byte: u8) -> Result<(), &'static str> {
        match self.expect {
            Expect::End => return Err("trailing characters"),
            Expect::Start | Expect::Value => self.start_value(byte)?,
            Expect::ArrayFirst if byte == b']' => self.close()?,
            Expect::ArrayFirst => self.start_value(byte)?,
            Expect::ObjectFirst if byte == b'}' => self.close()?,
            Expect::ObjectFirst | Expect::Key => {
                if byte == b'}' {
                    return Err("trailing comma");
                }
                if byte != b'"' {
                    return Err("key must be a string");
                }
                self.start_key();
            }
            Expect::Colon => {
                if byte != b':' {
                    return Err("expected `:`");
                }
                self.expect = Expect::Value;
            }
            Expect::AfterValue => {
                let object = self.in_object();
                match byte {
                    b',' => {
                        self.expect = if object { Expect::Key } else { Expect::Value };
                    }
                    b'}' if object => self.close()?,
                    b']' if !object => self.close()?,
                    _ if object => return Err("expected `,` or `}`"),
                    _ => return Err("expected `,` or `]`"),
                }
            }
        }
        Ok(())
    }

    fn start_key(&mut self) {
        let used = match self.role() {
            Some(Role::Top | Role::Record) => StrUse::Key,
            Some(Role::ClaimObject) => StrUse::StrictKey,
            _ => StrUse::Skipped,
        };
        self.key_pos = 0;
        self.key_equal = true;
        self.key_matched = false;
        self.utf8 = Utf8::START;
        self.token = Token::Str {
            used,
            escape: Escape::None,
        };
    }

    fn start_value(&mut self, byte: u8) -> Result<(), &'static str> {
        let role = if self.expect == Expect::Start {
            None
        } else {
            self.role()
        };
        let ignored_level = self.ignored.depth > 0;
        let claim = !ignored_level
            && self.key_matched
            && matches!(
                (self.kind, role),
                (BodyKind::Log, Some(Role::Record)) | (BodyKind::Digest, Some(Role::Top))
            );
        // The body, the records array and each record must be what they are.
        if self.expect == Expect::Start {
            if byte != b'{' {
                return Err("invalid type: expected a JSON object");
            }
            self.push_role(Role::Top);
            return Ok(());
        }
        if !ignored_level {
            match (self.kind, role) {
                (BodyKind::Log, Some(Role::Top)) if self.key_matched => {
                    if byte != b'[' {
                        return Err("invalid type: `Records` must be an array");
                    }
                    self.records_seen = true;
                    self.current.clear();
                    self.push_role(Role::Records);
                    return Ok(());
                }
                (_, Some(Role::Records)) => {
                    if byte != b'{' {
                        return Err("invalid type: a record must be an object");
                    }
                    self.pending_set = false;
                    self.push_role(Role::Record);
                    return Ok(());
                }
                _ => {}
            }
        }
        if claim {
            // Any occurrence replaces the earlier one; only a string claims.
            self.pending_set = false;
        }
        self.key_matched = false;
        match byte {
            b'"' => {
                if claim {
                    self.pending.clear();
                    self.pending_chars = 0;
                    self.pending_truncated = false;
                }
                self.utf8 = Utf8::START;
                self.token = Token::Str {
                    used: if claim {
                        StrUse::Claim
                    } else {
                        StrUse::Skipped
                    },
                    escape: Escape::None,
                };
            }
            b'-' | b'0'..=b'9' => {
                if claim {
                    self.number = NumberText::new();
                }
                let state = match byte {
                    b'-' => Num::Minus,
                    b'0' => Num::Zero,
                    _ => Num::Int,
                };
                if claim {
                    self.number.push(byte, state);
                }
                self.token = Token::Number {
                    state,
                    claimed: claim,
                };
            }
            b't' => self.token = Token::Literal { rest: b"rue" },
            b'f' => self.token = Token::Literal { rest: b"alse" },
            b'n' => self.token = Token::Literal { rest: b"ull" },
            b'{' if claim => self.push_role(Role::ClaimObject),
            b'[' if claim => self.push_role(Role::ClaimArray),
            b'{' | b'[' => {
                self.ignored.push(byte == b'{');
                self.expect = if byte == b'{' {
                    Expect::ObjectFirst
                } else {
                    Expect::ArrayFirst
                };
            }
            _ => return Err("expected value"),
        }
        Ok(())
    }

    fn push_role(&mut self, role: Role) {
        // Roles nest at most four deep (top, records, record, claim).
        if let Some(slot) = self.roles.get_mut(self.role_depth) {
            *slot = role;
            self.role_depth += 1;
        }
        self.key_matched = false;
        self.expect = if role.is_object() {
            Expect::ObjectFirst
        } else {
            Expect::ArrayFirst
        };
    }

    /// Closes the innermost container.
    fn close(&mut self) -> Result<(), &'static str> {
        if self.ignored.depth > 0 {
            self.ignored.pop();
        } else {
            let Some(role) = self.role() else {
                return Err("unexpected closing bracket");
            };
            self.role_depth -= 1;
            match role {
                Role::Record => self.keep_record_claim(),
                Role::Records => {
                    let current = std::mem::take(&mut self.current);
                    self.all.extend(current);
                }
                Role::Top if self.role_depth == 0 => {
                    self.expect = Expect::End;
                    return Ok(());
                }
                _ => {}
            }
        }
        self.value_done();
        Ok(())
    }

    /// A value ended: its container expects a comma or its end.
    fn value_done(&mut self) {
        self.key_matched = false;
        self.expect = if self.ignored.depth == 0 && self.role_depth == 0 {
            Expect::End
        } else {
            Expect::AfterValue
        };
    }

    /// Inside a string.
    fn string(
        &mut self,
        chunk: &[u8],
        mut index: usize,
        used: StrUse,
        mut escape: Escape,
    ) -> Result<usize, Fail> {
        let strict = used != StrUse::Skipped;
        while let Some(&byte) = chunk.get(index) {
            index += 1;
            match escape {
                Escape::None => match byte {
                    b'"' => {
                        if strict && self.utf8.need > 0 {
                            return Err((index - 1, "invalid unicode code point"));
                        }
                        self.token = Token::None;
                        self.string_done(used);
                        return Ok(index);
                    }
                    b'\\' => {
                        if strict && self.utf8.need > 0 {
                            return Err((index - 1, "invalid unicode code point"));
                        }
                        escape = Escape::Backslash;
                    }
                    0x00..=0x1f => {
                        return Err((index - 1, "control character while parsing a string"))
                    }
                    _ if !strict => {
                        // Skip to the next quote, backslash or control byte.
                        index += plain_run(&chunk[index..]);
                    }
                    0x20..=0x7f if self.utf8.need == 0 => {
                        // A run of plain ASCII, taken whole.
                        let start = index - 1;
                        let rest = &chunk[index..];
                        let run = rest
                            .iter()
                            .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))
                            .unwrap_or(rest.len());
                        index += run;
                        self.emit_ascii(used, &chunk[start..index]);
                    }
                    _ => {
                        if !self.utf8.push(byte) {
                            return Err((index - 1, "invalid unicode code point"));
                        }
                        self.emit(used, byte);
                    }
                },
                Escape::Backslash => {
                    escape = Escape::None;
                    let decoded = match byte {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            escape = Escape::Hex { read: 0, value: 0 };
                            continue;
                        }
                        _ => return Err((index - 1, "invalid escape")),
                    };
                    if strict {
                        self.emit(used, decoded);
                    }
                }
                Escape::Hex { read, value } | Escape::PairHex { read, value, .. } => {
                    let digit = match byte {
                        b'0'..=b'9' => byte - b'0',
                        b'a'..=b'f' => byte - b'a' + 10,
                        b'A'..=b'F' => byte - b'A' + 10,
                        _ => return Err((index - 1, "invalid escape")),
                    };
                    let value = (value << 4) | u16::from(digit);
                    let read = read + 1;
                    let high = match escape {
                        Escape::PairHex { high, .. } => Some(high),
                        _ => None,
                    };
                    if read < 4 {
                        escape = match high {
                            Some(high) => Escape::PairHex { high, read, value },
                            None => Escape::Hex { read, value },
                        };
                        continue;
                    }
                    escape = Escape::None;
                    if !strict {
                        continue;
                    }
                    match high {
                        None if (0xdc00..=0xdfff).contains(&value) => {
                            return Err((index - 1, "lone leading surrogate in hex escape"));
                        }
                        None if (0xd800..=0xdbff).contains(&value) => {
                            escape = Escape::PairBackslash { high: value };
                        }
                        None => self.emit_char(used, u32::from(value)),
                        Some(high) => {
                            if !(0xdc00..=0xdfff).contains(&value) {
                                return Err((index - 1, "lone leading surrogate in hex escape"));
                            }
                            let code = ((u32::from(high) - 0xd800) << 10
                                | (u32::from(value) - 0xdc00))
                                + 0x1_0000;
                            self.emit_char(used, code);
                        }
                    }
                }
                Escape::PairBackslash { high } => {
                    if byte != b'\\' {
                        return Err((index - 1, "unexpected end of hex escape"));
                    }
                    escape = Escape::PairU { high };
                }
                Escape::PairU { high } => {
                    if byte != b'u' {
                        return Err((index - 1, "unexpected end of hex escape"));
                    }
                    escape = Escape::PairHex {
                        high,
                        read: 0,
                        value: 0,
                    };
                }
            }
        }
        self.token = Token::Str { used, escape };
        Ok(index)
    }

    fn emit_char(&mut self, used: StrUse, code: u32) {
        let mut buffer = [0u8; 4];
        if let Some(c) = char::from_u32(code) {
            for &byte in c.encode_utf8(&mut buffer).as_bytes() {
                self.emit(used, byte);
            }
        }
    }

    /// Decoded ASCII bytes of a strict string.
    fn emit_ascii(&mut self, used: StrUse, run: &[u8]) {
        match used {
            StrUse::Key => {
                let wanted = self.wanted();
                let end = self.key_pos + run.len();
                if self.key_equal && wanted.get(self.key_pos..end) == Some(run) {
                    self.key_pos = end;
                } else {
                    self.key_equal = false;
                }
            }
            StrUse::Claim => {
                for &byte in run {
                    self.emit(used, byte);
                }
            }
            StrUse::StrictKey | StrUse::Skipped => {}
        }
    }

    /// One decoded byte of a strict string.
    fn emit(&mut self, used: StrUse, byte: u8) {
        match used {
            StrUse::Key => {
                let wanted = self.wanted();
                if self.key_equal && wanted.get(self.key_pos) == Some(&byte) {
                    self.key_pos += 1;
                } else {
                    self.key_equal = false;
                }
            }
            StrUse::Claim => {
                if self.pending_truncated {
                    return;
                }
                if byte & 0xc0 != 0x80 {
                    if self.pending_chars == MAX_CLAIM_CHARS {
                        self.pending_truncated = true;
                        return;
                    }
                    self.pending_chars += 1;
                }
                self.pending.push(byte);
            }
            StrUse::StrictKey | StrUse::Skipped => {}
        }
    }

    fn string_done(&mut self, used: StrUse) {
        match used {
            StrUse::Key => {
                self.key_matched = self.key_equal && self.key_pos == self.wanted().len();
                self.expect = Expect::Colon;
            }
            StrUse::StrictKey => self.expect = Expect::Colon,
            StrUse::Skipped if self.expect == Expect::ObjectFirst || self.expect == Expect::Key => {
                self.expect = Expect::Colon;
            }
            StrUse::Claim => {
                self.pending_set = true;
                self.value_done();
            }
            StrUse::Skipped => self.value_done(),
        }
    }
}

#[cfg(test)]
mod tests;
