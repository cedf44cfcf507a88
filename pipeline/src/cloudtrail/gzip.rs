//! Push-based inspection of single-member gzip objects while they stream from S3.
//!
//! CloudTrail hashes the **inflated** bytes of exactly one gzip member (docs/cloudtrail-format.md §4), and
//! an attacker may append a second member, truncate the object, corrupt it, or upload
//! a decompression bomb. [`GzipInspector`] takes the raw bytes chunk by chunk (we never
//! hold whole objects), and computes in one pass:
//!
//! * length and SHA-256 of the raw bytes (for the archive copy's checksum), and
//! * length and SHA-256 of the first member's inflated bytes, or why there are none
//!   ([`InflateError`]).
//!
//! The header is parsed by hand (RFC 1952, including FEXTRA/FNAME/FCOMMENT/FHCRC),
//! the body is inflated as raw deflate and the trailer's CRC-32 and ISIZE are
//! verified. Whether an object is gzip is decided by its magic bytes only, never by
//! `Content-Encoding` (docs/cloudtrail-format.md §7).
//!
//! **Chunking independence.** The outcome depends only on the byte sequence, not on
//! how it was split into chunks: input is processed internally in fixed blocks of
//! [`BLOCK_LEN`] bytes at fixed offsets, so the inflater sees the same calls, and
//! the progressive limit checks fire at the same points, for any chunking.

use std::cell::RefCell;

use aws_lc_rs::digest::{Context, SHA256};
use flate2::{Decompress, FlushDecompress, Status};

mod whole;

use super::digest::sha256;
use whole::{candidate_size, WholeInflater};

/// Bytes of raw input handed to the state machine at a time (see module docs).
pub const BLOCK_LEN: usize = 32 * 1024;
/// Size of the buffer the inflater writes into; limits are checked after each fill.
const OUTPUT_BUFFER_LEN: usize = 32 * 1024;
/// The compression ratio limit is only enforced once this many bytes have been
/// inflated, so small files that compress extremely well (e.g. `{"Records":[]}`
/// padded by the gzip header) are never rejected for their ratio.
pub const RATIO_ENFORCEMENT_FLOOR: u64 = 1024 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const CM_DEFLATE: u8 = 8;
const FLAG_FHCRC: u8 = 0x02;
const FLAG_FEXTRA: u8 = 0x04;
const FLAG_FNAME: u8 = 0x08;
const FLAG_FCOMMENT: u8 = 0x10;
const FLAG_RESERVED: u8 = 0xe0;
const FIXED_HEADER_LEN: usize = 10;
const TRAILER_LEN: usize = 8;

/// Bounds on inflation, to stop decompression bombs early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateLimits {
    /// Inflating more than this many bytes fails with [`InflateError::TooLarge`].
    pub max_inflated_bytes: u64,
    /// Once more than [`RATIO_ENFORCEMENT_FLOOR`] bytes are inflated, producing more
    /// than `max_ratio` inflated bytes per raw byte received so far fails with
    /// [`InflateError::RatioExceeded`]. Checked progressively, so a bomb is stopped
    /// after inflating about `max_ratio` × (bytes received) bytes. Deflate cannot
    /// exceed ~1032:1; CloudTrail JSON typically compresses 10–30:1.
    pub max_ratio: u64,
}

/// Why the raw bytes did not yield the inflated content of one gzip member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The object does not start with the gzip magic bytes `1f 8b` (including objects
    /// shorter than two bytes). Possibly already decompressed by some transport.
    #[error("not gzip: object does not start with the magic bytes 1f 8b")]
    NotGzip,
    /// The header, the deflate data or the trailer (CRC-32, ISIZE) is invalid.
    #[error("corrupt gzip data: {0}")]
    Corrupt(String),
    /// The object ended before the end of the first member's trailer.
    #[error("gzip data is truncated")]
    Truncated,
    /// Bytes follow the first member's trailer — e.g. an appended second member,
    /// which multi-member readers would show but CloudTrail never hashed (docs/cloudtrail-format.md §4).
    #[error("{extra_bytes} bytes of unexpected data after the end of the gzip member")]
    TrailingData {
        /// How many bytes follow the trailer.
        extra_bytes: u64,
    },
    /// More than `limit` bytes inflated.
    #[error("inflated content exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured [`InflateLimits::max_inflated_bytes`].
        limit: u64,
    },
    /// Inflated/raw ratio exceeded `limit` (after [`RATIO_ENFORCEMENT_FLOOR`]).
    #[error("compression ratio exceeds the limit of {limit}:1")]
    RatioExceeded {
        /// The configured [`InflateLimits::max_ratio`].
        limit: u64,
    },
}

/// Where the inflated bytes go as they are produced (after the size and
/// ratio limits allowed them, before the trailer is checked): a content check
/// reads the content in the same pass that hashes it, so nothing is inflated
/// twice. What a sink concludes counts only when the outcome is `Ok`.
pub trait InflatedSink {
    fn inflated(&mut self, bytes: &[u8]);
}

/// A sink that drops the bytes.
pub struct NoSink;

impl InflatedSink for NoSink {
    fn inflated(&mut self, _bytes: &[u8]) {}
}

/// Length and SHA-256 of the inflated content of the first gzip member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Number of inflated bytes.
    pub len: u64,
    /// SHA-256 of the inflated bytes (what digests list as `hashValue`).
    pub sha256: [u8; 32],
}

/// Everything learned from one object's raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectOutcome {
    /// Number of raw bytes received.
    pub raw_len: u64,
    /// SHA-256 of all raw bytes received (always computed, even for invalid gzip).
    pub raw_sha256: [u8; 32],
    /// The inflated content's length and hash, or why it is unavailable.
    pub inflated: Result<Inflated, InflateError>,
}

/// Where the header parser is.
#[derive(Debug)]
enum HeaderStep {
    /// Collecting the 10 fixed bytes.
    Fixed,
    /// Collecting the 2-byte FEXTRA length.
    ExtraLen,
    /// Skipping FEXTRA payload bytes.
    Extra { remaining: usize },
    /// Skipping the zero-terminated FNAME.
    Name,
    /// Skipping the zero-terminated FCOMMENT.
    Comment,
    /// Collecting the 2-byte FHCRC.
    HeaderCrc,
    /// The header is complete; what follows is deflate data.
    Complete,
}

#[derive(Debug)]
struct HeaderParser {
    step: HeaderStep,
    flags: u8,
    /// Small fixed-size fields being collected (fixed header, XLEN, FHCRC).
    buffer: [u8; FIXED_HEADER_LEN],
    buffered: usize,
    /// CRC-32 of all header bytes before FHCRC (FHCRC is its low 16 bits).
    crc: crc32fast::Hasher,
}

enum State {
    Header(Box<HeaderParser>),
    Body,
    Trailer {
        buffer: [u8; TRAILER_LEN],
        buffered: usize,
    },
    /// The first member is complete and verified; counting any bytes after it.
    Done {
        extra_bytes: u64,
    },
    Failed(InflateError),
}

/// Push-based inspector of one gzip object; see the module docs.
///
/// Feed chunks with [`GzipInspector::update`], then call [`GzipInspector::finish`].
/// It never panics on any input; once the gzip data is found invalid it keeps
/// hashing the raw bytes and ignores the rest.
pub struct GzipInspector {
    limits: InflateLimits,
    state: State,
    decompress: Decompress,
    raw_len: u64,
    raw_sha256: Context,
    /// Raw bytes handed to the state machine so far (whole blocks), for the ratio.
    raw_processed: u64,
    /// Bytes of the current, incomplete block.
    pending: Vec<u8>,
    output: Vec<u8>,
    inflated_len: u64,
    inflated_sha256: Context,
    inflated_crc: crc32fast::Hasher,
    /// When set, the inflated bytes are also collected (for [`inflate_single_member`]),
    /// as long as they fit in `keep_up_to` bytes;
    /// `collect_complete` turns false when they do not, or the member is invalid.
    collected: Option<Vec<u8>>,
    keep_up_to: u64,
    collect_complete: bool,
}

impl std::fmt::Debug for GzipInspector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GzipInspector")
            .field("limits", &self.limits)
            .field("raw_len", &self.raw_len)
            .field("inflated_len", &self.inflated_len)
            .field("failure", &self.failure())
            .finish_non_exhaustive()
    }
}

impl GzipInspector {
    /// A fresh inspector enforcing `limits`.
    pub fn new(limits: InflateLimits) -> Self {
        Self {
            limits,
            state: fresh_header(),
            decompress: Decompress::new(false),
            raw_len: 0,
            raw_sha256: Context::new(&SHA256),
            raw_processed: 0,
            pending: Vec::with_capacity(BLOCK_LEN),
            output: vec![0; OUTPUT_BUFFER_LEN],
            inflated_len: 0,
            inflated_sha256: Context::new(&SHA256),
            inflated_crc: crc32fast::Hasher::new(),
            collected: None,
            keep_up_to: 0,
            collect_complete: false,
        }
    }

    /// Makes this inspector ready for a new object, keeping its buffers and
    /// inflater state allocations.
    fn reset(&mut self, limits: InflateLimits) {
        self.limits = limits;
        self.state = fresh_header();
        self.decompress.reset(false);
        self.raw_len = 0;
        self.raw_sha256 = Context::new(&SHA256);
        self.raw_processed = 0;
        self.pending.clear();
        self.inflated_len = 0;
        self.inflated_sha256 = Context::new(&SHA256);
        self.inflated_crc = crc32fast::Hasher::new();
        self.collected = None;
        self.keep_up_to = 0;
        self.collect_complete = false;
    }

    /// Number of raw bytes received so far (lets the caller cap raw object size).
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// The error already established, if any. A caller may stop downloading early
    /// when it only needs the inflated hash; the raw hash then covers a prefix only.
    /// Before [`GzipInspector::finish`], truncation is not yet known.
    pub fn failure(&self) -> Option<&InflateError> {
        match &self.state {
            State::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// Feeds the next chunk of raw bytes (any size, including empty).
    pub fn update(&mut self, chunk: &[u8]) {
        self.update_into(chunk, &mut NoSink);
    }

    /// [`GzipInspector::update`], handing the inflated bytes to `sink`.
    pub fn update_into(&mut self, chunk: &[u8], sink: &mut dyn InflatedSink) {
        self.raw_sha256.update(chunk);
        self.raw_len = self.raw_len.saturating_add(chunk.len() as u64);
        let mut rest = chunk;
        while !rest.is_empty() {
            if let State::Done { extra_bytes } = &mut self.state {
                // Invariant: no pending block once the member is done (the transition
                // happens while processing a complete block).
                debug_assert!(self.pending.is_empty());
                *extra_bytes = extra_bytes.saturating_add(rest.len() as u64);
                return;
            }
            if matches!(self.state, State::Failed(_)) {
                return;
            }
            if self.pending.is_empty() && rest.len() >= BLOCK_LEN {
                let (block, tail) = rest.split_at_checked(BLOCK_LEN).unwrap_or((rest, &[]));
                self.process_block(block, sink);
                rest = tail;
                continue;
            }
            let wanted = BLOCK_LEN.saturating_sub(self.pending.len()).min(rest.len());
            let (head, tail) = rest.split_at_checked(wanted).unwrap_or((rest, &[]));
            self.pending.extend_from_slice(head);
            rest = tail;
            if self.pending.len() >= BLOCK_LEN {
                let block = std::mem::take(&mut self.pending);
                self.process_block(&block, sink);
                self.pending = block;
                self.pending.clear();
            }
        }
    }

    /// Ends the object and returns the outcome.
    pub fn finish(mut self) -> InspectOutcome {
        self.finish_in_place(&mut NoSink)
    }

    /// [`GzipInspector::finish`], handing the last inflated bytes to `sink`.
    pub fn finish_into(mut self, sink: &mut dyn InflatedSink) -> InspectOutcome {
        self.finish_in_place(sink)
    }

    /// [`GzipInspector::finish`] without giving up the inspector (see [`GzipInspector::reset`]).
    fn finish_in_place(&mut self, sink: &mut dyn InflatedSink) -> InspectOutcome {
        if !self.pending.is_empty() {
            let mut block = std::mem::take(&mut self.pending);
            self.process_block(&block, sink);
            block.clear();
            self.pending = block;
        }
        if matches!(self.state, State::Body) {
            // Drain output the inflater may still hold from the last full buffer.
            self.inflate(&[], sink);
        }
        let inflated = match std::mem::replace(&mut self.state, State::Done { extra_bytes: 0 }) {
            State::Done { extra_bytes: 0 } => Ok(Inflated {
                len: self.inflated_len,
                sha256: finish_sha256(std::mem::replace(
                    &mut self.inflated_sha256,
                    Context::new(&SHA256),
                )),
            }),
            State::Done { extra_bytes } => Err(InflateError::TrailingData { extra_bytes }),
            State::Failed(error) => Err(error),
            State::Header(_) if self.raw_len < GZIP_MAGIC.len() as u64 => {
                Err(InflateError::NotGzip)
            }
            State::Header(_) | State::Body | State::Trailer { .. } => Err(InflateError::Truncated),
        };
        if inflated.is_err() {
            self.collect_complete = false;
        }
        InspectOutcome {
            raw_len: self.raw_len,
            raw_sha256: finish_sha256(std::mem::replace(
                &mut self.raw_sha256,
                Context::new(&SHA256),
            )),
            inflated,
        }
    }

    fn fail(&mut self, error: InflateError) {
        self.state = State::Failed(error);
        self.collect_complete = false;
    }

    /// Runs the state machine over one block (a full [`BLOCK_LEN`] block, or the
    /// final partial one).
    fn process_block(&mut self, block: &[u8], sink: &mut dyn InflatedSink) {
        self.raw_processed = self.raw_processed.saturating_add(block.len() as u64);
        let mut input = block;
        loop {
            match &mut self.state {
                State::Header(parser) => {
                    if input.is_empty() {
                        return;
                    }
                    match parser.feed(&mut input) {
                        Ok(true) => self.state = State::Body,
                        Ok(false) => {}
                        Err(error) => {
                            self.fail(error);
                            return;
                        }
                    }
                }
                State::Body => {
                    let consumed = self.inflate(input, sink);
                    input = input.get(consumed..).unwrap_or(&[]);
                    if matches!(self.state, State::Body) {
                        // Without progress the inflater needs more input.
                        return;
                    }
                }
                State::Trailer { buffer, buffered } => {
                    let wanted = (TRAILER_LEN - *buffered).min(input.len());
                    let (head, tail) = input.split_at_checked(wanted).unwrap_or((input, &[]));
                    if let Some(slot) = buffer.get_mut(*buffered..*buffered + head.len()) {
                        slot.copy_from_slice(head);
                    }
                    *buffered += head.len();
                    input = tail;
                    if *buffered < TRAILER_LEN {
                        return;
                    }
                    let trailer = *buffer;
                    match self.check_trailer(trailer) {
                        Ok(()) => self.state = State::Done { extra_bytes: 0 },
                        Err(error) => {
                            self.fail(error);
                            return;
                        }
                    }
                }
                State::Done { extra_bytes } => {
                    *extra_bytes = extra_bytes.saturating_add(input.len() as u64);
                    return;
                }
                State::Failed(_) => return,
            }
        }
    }

    /// Inflates from `input` until the member ends, the input is used up and the
    /// output drained, or an error/limit stops it. Returns the bytes consumed.
    fn inflate(&mut self, input: &[u8], sink: &mut dyn InflatedSink) -> usize {
        let mut consumed_total = 0usize;
        loop {
            let remaining = input.get(consumed_total..).unwrap_or(&[]);
            let in_before = self.decompress.total_in();
            let out_before = self.decompress.total_out();
            let status =
                self.decompress
                    .decompress(remaining, &mut self.output, FlushDecompress::None);
            let consumed = usize::try_from(self.decompress.total_in().saturating_sub(in_before))
                .unwrap_or(usize::MAX)
                .min(remaining.len());
            let produced = usize::try_from(self.decompress.total_out().saturating_sub(out_before))
                .unwrap_or(usize::MAX)
                .min(self.output.len());
            consumed_total += consumed;
            if produced > 0 {
                if let Err(error) = self.take_output(produced, sink) {
                    self.fail(error);
                    return consumed_total;
                }
            }
            match status {
                Err(error) => {
                    self.fail(InflateError::Corrupt(format!(
                        "invalid deflate data: {error}"
                    )));
                    return consumed_total;
                }
                Ok(Status::StreamEnd) => {
                    self.state = State::Trailer {
                        buffer: [0; TRAILER_LEN],
                        buffered: 0,
                    };
                    return consumed_total;
                }
                Ok(Status::Ok | Status::BufError) => {
                    if consumed == 0 && produced == 0 {
                        if consumed_total < input.len() {
                            // Input left and output room, yet no progress: refuse to
                            // loop forever on whatever state the inflater is in.
                            self.fail(InflateError::Corrupt(
                                "inflater made no progress".to_owned(),
                            ));
                        }
                        return consumed_total;
                    }
                }
            }
        }
    }

    /// Accounts for `produced` fresh bytes in the output buffer, enforcing limits
    /// before they are hashed or collected.
    fn take_output(
        &mut self,
        produced: usize,
        sink: &mut dyn InflatedSink,
    ) -> Result<(), InflateError> {
        let new_len = self.inflated_len.saturating_add(produced as u64);
        if new_len > self.limits.max_inflated_bytes {
            return Err(InflateError::TooLarge {
                limit: self.limits.max_inflated_bytes,
            });
        }
        if new_len > RATIO_ENFORCEMENT_FLOOR
            && new_len > self.limits.max_ratio.saturating_mul(self.raw_processed)
        {
            return Err(InflateError::RatioExceeded {
                limit: self.limits.max_ratio,
            });
        }
        self.inflated_len = new_len;
        let fresh = self.output.get(..produced).unwrap_or(&[]);
        self.inflated_sha256.update(fresh);
        self.inflated_crc.update(fresh);
        sink.inflated(fresh);
        if let Some(collected) = self.collected.as_mut().filter(|_| self.collect_complete) {
            if (collected.len() + fresh.len()) as u64 > self.keep_up_to {
                // Too large to keep: hashing and checks go on without it.
                self.collect_complete = false;
                collected.clear();
            } else {
                collected.extend_from_slice(fresh);
            }
        }
        Ok(())
    }

    fn check_trailer(&self, trailer: [u8; TRAILER_LEN]) -> Result<(), InflateError> {
        let [c0, c1, c2, c3, s0, s1, s2, s3] = trailer;
        let expected_crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let expected_size = u32::from_le_bytes([s0, s1, s2, s3]);
        let actual_crc = self.inflated_crc.clone().finalize();
        if actual_crc != expected_crc {
            return Err(InflateError::Corrupt(format!(
                "CRC-32 mismatch: trailer says {expected_crc:08x}, content has {actual_crc:08x}"
            )));
        }
        // ISIZE is the inflated length modulo 2^32 (RFC 1952).
        let actual_size = (self.inflated_len & u64::from(u32::MAX)) as u32;
        if actual_size != expected_size {
            return Err(InflateError::Corrupt(format!(
                "ISIZE mismatch: trailer says {expected_size}, content has {actual_size} (mod 2^32)"
            )));
        }
        Ok(())
    }
}

impl HeaderParser {
    /// Consumes header bytes from `input`. Returns `Ok(true)` once the header is
    /// complete (the remaining `input` is deflate data).
    fn feed(&mut self, input: &mut &[u8]) -> Result<bool, InflateError> {
        while !input.is_empty() {
            match self.step {
                HeaderStep::Fixed => {
                    if !self.collect(input, FIXED_HEADER_LEN) {
                        // Reject wrong magic as early as the first byte.
                        let seen = self.buffer.get(..self.buffered.min(2)).unwrap_or(&[]);
                        if GZIP_MAGIC.get(..seen.len()) != Some(seen) {
                            return Err(InflateError::NotGzip);
                        }
                        continue;
                    }
                    let [id1, id2, method, flags, ..] = self.buffer;
                    if [id1, id2] != GZIP_MAGIC {
                        return Err(InflateError::NotGzip);
                    }
                    if method != CM_DEFLATE {
                        return Err(InflateError::Corrupt(format!(
                            "unsupported compression method {method}"
                        )));
                    }
                    if flags & FLAG_RESERVED != 0 {
                        return Err(InflateError::Corrupt(format!(
                            "reserved header flag bits set ({flags:#04x})"
                        )));
                    }
                    self.flags = flags;
                    self.crc.update(&self.buffer);
                    self.buffered = 0;
                    self.step = HeaderStep::ExtraLen;
                    if flags & FLAG_FEXTRA == 0 {
                        self.step = self.after_extra();
                    }
                }
                HeaderStep::ExtraLen => {
                    if !self.collect(input, 2) {
                        continue;
                    }
                    let [low, high, ..] = self.buffer;
                    self.crc.update(&[low, high]);
                    self.buffered = 0;
                    let remaining = usize::from(u16::from_le_bytes([low, high]));
                    self.step = if remaining == 0 {
                        self.after_extra()
                    } else {
                        HeaderStep::Extra { remaining }
                    };
                }
                HeaderStep::Extra { remaining } => {
                    let take = remaining.min(input.len());
                    let (head, tail) = input.split_at_checked(take).unwrap_or((input, &[]));
                    self.crc.update(head);
                    *input = tail;
                    let left = remaining - take;
                    self.step = if left == 0 {
                        self.after_extra()
                    } else {
                        HeaderStep::Extra { remaining: left }
                    };
                }
                HeaderStep::Name | HeaderStep::Comment => {
                    let terminator = input.iter().position(|&byte| byte == 0);
                    let take = terminator.map_or(input.len(), |index| index + 1);
                    let (head, tail) = input.split_at_checked(take).unwrap_or((input, &[]));
                    self.crc.update(head);
                    *input = tail;
                    if terminator.is_some() {
                        self.step = if matches!(self.step, HeaderStep::Name) {
                            self.after_name()
                        } else {
                            self.after_comment()
                        };
                    }
                }
                HeaderStep::HeaderCrc => {
                    if !self.collect(input, 2) {
                        continue;
                    }
                    let [low, high, ..] = self.buffer;
                    let expected = u16::from_le_bytes([low, high]);
                    let actual = (self.crc.clone().finalize() & 0xffff) as u16;
                    if expected != actual {
                        return Err(InflateError::Corrupt(format!(
                            "header CRC mismatch: header says {expected:04x}, header has {actual:04x}"
                        )));
                    }
                    self.step = HeaderStep::Complete;
                }
                HeaderStep::Complete => {}
            }
            if matches!(self.step, HeaderStep::Complete) {
                return Ok(true);
            }
        }
        Ok(matches!(self.step, HeaderStep::Complete))
    }

    /// Copies bytes into `buffer` until it holds `wanted`; true when it does.
    fn collect(&mut self, input: &mut &[u8], wanted: usize) -> bool {
        let take = wanted.saturating_sub(self.buffered).min(input.len());
        let (head, tail) = input.split_at_checked(take).unwrap_or((input, &[]));
        if let Some(slot) = self
            .buffer
            .get_mut(self.buffered..self.buffered + head.len())
        {
            slot.copy_from_slice(head);
        }
        self.buffered += head.len();
        *input = tail;
        self.buffered >= wanted
    }

    fn after_extra(&self) -> HeaderStep {
        if self.flags & FLAG_FNAME != 0 {
            HeaderStep::Name
        } else {
            self.after_name()
        }
    }

    fn after_name(&self) -> HeaderStep {
        if self.flags & FLAG_FCOMMENT != 0 {
            HeaderStep::Comment
        } else {
            self.after_comment()
        }
    }

    fn after_comment(&self) -> HeaderStep {
        if self.flags & FLAG_FHCRC != 0 {
            HeaderStep::HeaderCrc
        } else {
            HeaderStep::Complete
        }
    }
}

fn finish_sha256(context: Context) -> [u8; 32] {
    let digest = context.finish();
    let bytes = <[u8; 32]>::try_from(digest.as_ref());
    debug_assert!(bytes.is_ok(), "SHA-256 is 32 bytes");
    bytes.unwrap_or([0; 32])
}

/// Inspects a complete object held in memory; same result as one
/// [`GzipInspector::update`] with all bytes.
pub fn inspect(bytes: &[u8], limits: InflateLimits) -> InspectOutcome {
    THREAD_INSPECTOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut inspector) => inspector.inspect_into(bytes, limits, &mut NoSink),
        Err(_) => BodyInspector::default().inspect_into(bytes, limits, &mut NoSink),
    })
}

thread_local! {
    /// The [`BodyInspector`] behind [`inspect`], one per thread.
    static THREAD_INSPECTOR: RefCell<BodyInspector> = RefCell::new(BodyInspector::default());
}

/// Inflates the single gzip member in `bytes` and returns the exact inflated bytes,
/// with the same checks as [`GzipInspector`] (magic, CRC, ISIZE, no trailing data,
/// limits). Used for digests, which must be parsed and hashed from the same bytes.
/// Memory use is bounded by `limits.max_inflated_bytes`.
pub fn inflate_single_member(bytes: &[u8], limits: InflateLimits) -> Result<Vec<u8>, InflateError> {
    let (outcome, collected) = inspect_keeping(bytes, limits, limits.max_inflated_bytes);
    outcome.inflated?;
    Ok(collected.unwrap_or_default())
}

/// [`inspect`] of a body held in memory, in the same single pass also returning
/// the inflated bytes when the member is valid and inflates to at most
/// `keep_up_to` bytes (`None` otherwise).
pub fn inspect_keeping(
    bytes: &[u8],
    limits: InflateLimits,
    keep_up_to: u64,
) -> (InspectOutcome, Option<Vec<u8>>) {
    let mut inspector = GzipInspector::new(limits);
    let mut kept = Vec::new();
    let (outcome, complete) =
        inspect_with(&mut inspector, &mut kept, bytes, keep_up_to, &mut NoSink);
    (outcome, complete.then_some(kept))
}

/// Runs `inspector` (fresh or reset) over `bytes`, collecting into `kept`. The
/// buffer is sized once from the gzip trailer's ISIZE, capped by `keep_up_to`
/// and the limits, so an untrusted trailer cannot make it allocate more than a
/// legitimate body could.
fn inspect_with(
    inspector: &mut GzipInspector,
    kept: &mut Vec<u8>,
    bytes: &[u8],
    keep_up_to: u64,
    sink: &mut dyn InflatedSink,
) -> (InspectOutcome, bool) {
    let claimed_size = bytes
        .len()
        .checked_sub(4)
        .and_then(|start| bytes.get(start..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |tail| u64::from(u32::from_le_bytes(tail)));
    let limits = inspector.limits;
    let capacity = claimed_size
        .min(keep_up_to)
        .min(limits.max_inflated_bytes)
        .min(
            limits
                .max_ratio
                .saturating_mul(bytes.len() as u64)
                .max(RATIO_ENFORCEMENT_FLOOR),
        );
    kept.clear();
    kept.reserve(usize::try_from(capacity).unwrap_or(0));
    inspector.collected = Some(std::mem::take(kept));
    inspector.keep_up_to = keep_up_to;
    inspector.collect_complete = true;
    inspector.update_into(bytes, sink);
    let outcome = inspector.finish_in_place(sink);
    *kept = inspector.collected.take().unwrap_or_default();
    let complete = inspector.collect_complete;
    if !complete {
        kept.clear();
    }
    (outcome, complete)
}

/// A reusable inspector for bodies held in memory, one per thread in the
/// copy path: its inflater, windows and output buffer are allocated once, not
/// per object.
#[derive(Debug, Default)]
pub struct BodyInspector {
    inspector: Option<GzipInspector>,
    whole: Option<WholeInflater>,
    /// The fast path's output buffer, kept between bodies up to
    /// [`KEPT_OUTPUT_BYTES`].
    output: Vec<u8>,
}

/// The largest output buffer a [`BodyInspector`] keeps between bodies; larger
/// contents get a buffer of their own, freed after use.
const KEPT_OUTPUT_BYTES: usize = 1024 * 1024;

impl BodyInspector {
    /// [`inspect`], handing the inflated bytes to `sink` (nothing is kept).
    /// A body libdeflate can inflate in one call with the same verdict (see
    /// `whole::candidate_size`) is inflated that way and handed to `sink` in
    /// one piece; any other goes through the streaming [`GzipInspector`].
    pub fn inspect_into(
        &mut self,
        bytes: &[u8],
        limits: InflateLimits,
        sink: &mut dyn InflatedSink,
    ) -> InspectOutcome {
        if let Some(outcome) = self.whole_member(bytes, limits, sink) {
            return outcome;
        }
        self.stream(bytes, limits, sink)
    }

    /// The fast path: `None` when it does not apply or libdeflate refused
    /// the body (the streaming inspector then decides why). `sink` sees the
    /// content only when the member is valid.
    fn whole_member(
        &mut self,
        bytes: &[u8],
        limits: InflateLimits,
        sink: &mut dyn InflatedSink,
    ) -> Option<InspectOutcome> {
        let size = candidate_size(bytes, limits)?;
        if self.whole.is_none() {
            self.whole = WholeInflater::new();
        }
        let inflater = self.whole.as_mut()?;
        let mut own;
        let output = if size <= KEPT_OUTPUT_BYTES {
            if self.output.len() < size {
                self.output.resize(size, 0);
            }
            self.output.get_mut(..size)?
        } else {
            own = vec![0; size];
            own.as_mut_slice()
        };
        let written = inflater.member(bytes, output)?;
        let content = output.get(..written)?;
        sink.inflated(content);
        Some(InspectOutcome {
            raw_len: bytes.len() as u64,
            raw_sha256: sha256(bytes),
            inflated: Ok(Inflated {
                len: written as u64,
                sha256: sha256(content),
            }),
        })
    }

    /// The streaming inspector over the whole body.
    fn stream(
        &mut self,
        bytes: &[u8],
        limits: InflateLimits,
        sink: &mut dyn InflatedSink,
    ) -> InspectOutcome {
        if let Some(inspector) = self.inspector.as_mut() {
            inspector.reset(limits);
        }
        let inspector = self
            .inspector
            .get_or_insert_with(|| GzipInspector::new(limits));
        inspector.update_into(bytes, sink);
        inspector.finish_in_place(sink)
    }
}

fn fresh_header() -> State {
    State::Header(Box::new(HeaderParser {
        step: HeaderStep::Fixed,
        flags: 0,
        buffer: [0; FIXED_HEADER_LEN],
        buffered: 0,
        crc: crc32fast::Hasher::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use flate2::Compression;
    use proptest::prelude::*;
    use std::io::Write;

    const LIMITS: InflateLimits = InflateLimits {
        max_inflated_bytes: 64 * 1024 * 1024,
        max_ratio: 2000,
    };

    fn gzip(data: &[u8], level: u32) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::new(level));
        encoder.write_all(data).expect("write");
        encoder.finish().expect("finish")
    }

    /// A gzip member with a hand-built header using every optional field.
    fn gzip_with_all_header_fields(data: &[u8], header_crc_ok: bool) -> Vec<u8> {
        let mut header = vec![
            0x1f,
            0x8b,
            8,
            0x01 | 0x02 | 0x04 | 0x08 | 0x10,
            1,
            2,
            3,
            4,
            0,
            255,
        ];
        header.extend_from_slice(&5u16.to_le_bytes());
        header.extend_from_slice(b"AB\x03\x00z");
        header.extend_from_slice(b"name.json\0");
        header.extend_from_slice(b"a comment\0");
        let crc16 = (crc32fast::hash(&header) & 0xffff) as u16;
        let crc16 = if header_crc_ok { crc16 } else { crc16 ^ 1 };
        header.extend_from_slice(&crc16.to_le_bytes());
        let mut deflate = DeflateEncoder::new(Vec::new(), Compression::default());
        deflate.write_all(data).expect("write");
        header.extend_from_slice(&deflate.finish().expect("finish"));
        header.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        header
    }

    fn inspect_chunked(
        bytes: &[u8],
        chunk_sizes: &[usize],
        limits: InflateLimits,
    ) -> InspectOutcome {
        let mut inspector = GzipInspector::new(limits);
        let mut rest = bytes;
        let mut sizes = chunk_sizes.iter().cycle();
        while !rest.is_empty() {
            let size = sizes
                .next()
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            let (head, tail) = rest.split_at(size);
            inspector.update(head);
            inspector.update(&[]);
            rest = tail;
        }
        inspector.finish()
    }

    /// Deterministic pseudo-random bytes; `compressible` draws from a small alphabet.
    fn pseudo_random(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if compressible {
                    b"{\"Records\":[ ]}abc"[(state % 18) as usize]
                } else {
                    (state >> 24) as u8
                }
            })
            .collect()
    }

    #[test]
    fn valid_member_hashes_raw_and_inflated() {
        let data = br#"{"Records":[{"eventName":"ListBuckets"}]}"#;
        let raw = gzip(data, 6);
        let outcome = inspect(&raw, LIMITS);
        assert_eq!(outcome.raw_len, raw.len() as u64);
        assert_eq!(outcome.raw_sha256, sha256(&raw));
        assert_eq!(
            outcome.inflated,
            Ok(Inflated {
                len: data.len() as u64,
                sha256: sha256(data)
            })
        );
        assert_eq!(
            inflate_single_member(&raw, LIMITS).as_deref(),
            Ok(&data[..])
        );
    }

    #[test]
    fn aws_cli_log_hash_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../testdata/aws-cli-test-vectors.json"))
                .expect("json");
        let cases = vectors["log_hash_vectors"]["vectors"]
            .as_array()
            .expect("array");
        assert_eq!(cases.len(), 3);
        for case in cases {
            let body = case["uncompressed"].as_str().expect("body");
            let outcome = inspect(&gzip(body.as_bytes(), 9), LIMITS);
            let inflated = outcome.inflated.expect("valid gzip");
            assert_eq!(
                hex::encode(inflated.sha256),
                case["hashValue"].as_str().expect("hash")
            );
        }
    }

    #[test]
    fn empty_content_is_valid() {
        let raw = gzip(b"", 6);
        assert_eq!(
            inspect(&raw, LIMITS).inflated,
            Ok(Inflated {
                len: 0,
                sha256: sha256(b"")
            })
        );
    }

    #[test]
    fn all_optional_header_fields_are_skipped_and_header_crc_checked() {
        let data = b"hello header fields";
        let good = gzip_with_all_header_fields(data, true);
        for chunk in [1usize, 2, 3, 7, 1000] {
            assert_eq!(
                inspect_chunked(&good, &[chunk], LIMITS).inflated,
                Ok(Inflated {
                    len: data.len() as u64,
                    sha256: sha256(data)
                })
            );
        }
        let bad = gzip_with_all_header_fields(data, false);
        assert!(
            matches!(inspect(&bad, LIMITS).inflated, Err(InflateError::Corrupt(message)) if message.contains("header CRC"))
        );
    }

    #[test]
    fn magic_decides_gzip() {
        for bytes in [&b""[..], b"\x1f", b"{}", b"\x1f\x8a\x08", b"\x8b\x1f"] {
            let outcome = inspect(bytes, LIMITS);
            assert_eq!(outcome.inflated, Err(InflateError::NotGzip), "{bytes:?}");
            assert_eq!(outcome.raw_sha256, sha256(bytes));
        }
        assert_eq!(
            inspect(b"\x1f\x8b", LIMITS).inflated,
            Err(InflateError::Truncated)
        );
    }

    #[test]
    fn header_errors_are_corrupt() {
        let mut raw = gzip(b"abc", 6);
        raw[2] = 7;
        assert!(matches!(
            inspect(&raw, LIMITS).inflated,
            Err(InflateError::Corrupt(_))
        ));
        let mut raw = gzip(b"abc", 6);
        raw[3] |= 0x20;
        assert!(matches!(
            inspect(&raw, LIMITS).inflated,
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn trailer_is_verified() {
        let raw = gzip(b"some content", 6);
        let crc_index = raw.len() - 8;
        let size_index = raw.len() - 4;
        for index in [crc_index, size_index] {
            let mut tampered = raw.clone();
            tampered[index] ^= 0x40;
            assert!(
                matches!(
                    inspect(&tampered, LIMITS).inflated,
                    Err(InflateError::Corrupt(_))
                ),
                "byte {index}"
            );
        }
    }

    #[test]
    fn every_strict_prefix_is_truncated() {
        let raw = gzip_with_all_header_fields(b"prefix test content", true);
        for len in 2..raw.len() {
            assert_eq!(
                inspect(&raw[..len], LIMITS).inflated,
                Err(InflateError::Truncated),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn appended_member_and_padding_are_trailing_data() {
        let first = gzip(b"{\"Records\":[]}", 6);
        let second = gzip(b"{\"Records\":[{\"forged\":true}]}", 6);
        let combined = [first.clone(), second.clone()].concat();
        assert_eq!(
            inspect(&combined, LIMITS).inflated,
            Err(InflateError::TrailingData {
                extra_bytes: second.len() as u64
            })
        );
        assert_eq!(
            inflate_single_member(&combined, LIMITS),
            Err(InflateError::TrailingData {
                extra_bytes: second.len() as u64
            })
        );
        let padded = [first, vec![0]].concat();
        assert_eq!(
            inspect(&padded, LIMITS).inflated,
            Err(InflateError::TrailingData { extra_bytes: 1 })
        );
    }

    /// A sink keeping every byte it is handed.
    #[derive(Default)]
    struct Keep(Vec<u8>);

    impl InflatedSink for Keep {
        fn inflated(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    /// The streaming inspector alone, fed in odd chunks, and what it handed its sink.
    fn streamed(bytes: &[u8], limits: InflateLimits) -> (InspectOutcome, Vec<u8>) {
        let mut inspector = GzipInspector::new(limits);
        let mut sink = Keep::default();
        for chunk in bytes.chunks(7_919) {
            inspector.update_into(chunk, &mut sink);
        }
        (inspector.finish_into(&mut sink), sink.0)
    }

    /// [`BodyInspector::inspect_into`] (fast path first), and what its sink saw.
    fn whole(
        inspector: &mut BodyInspector,
        bytes: &[u8],
        limits: InflateLimits,
    ) -> (InspectOutcome, Vec<u8>) {
        let mut sink = Keep::default();
        let outcome = inspector.inspect_into(bytes, limits, &mut sink);
        (outcome, sink.0)
    }

    /// Whether the libdeflate path alone accepts `bytes`.
    fn fast_path_takes(bytes: &[u8], limits: InflateLimits) -> bool {
        BodyInspector::default()
            .whole_member(bytes, limits, &mut NoSink)
            .is_some()
    }

    #[test]
    fn the_fast_path_inflates_ordinary_logs_and_agrees_with_streaming() {
        let data = pseudo_random(7, 300_000, true);
        let raw = gzip(&data, 6);
        assert!(fast_path_takes(&raw, LIMITS));
        let mut inspector = BodyInspector::default();
        let (outcome, seen) = whole(&mut inspector, &raw, LIMITS);
        assert_eq!((outcome.clone(), seen.clone()), streamed(&raw, LIMITS));
        assert_eq!(outcome.inflated.map(|i| i.sha256), Ok(sha256(&data)));
        assert_eq!(seen, data);
        // The reused buffer carries nothing from a larger body to a smaller one.
        let small = gzip(b"{\"Records\":[]}", 6);
        assert_eq!(
            whole(&mut inspector, &small, LIMITS),
            streamed(&small, LIMITS)
        );
    }

    #[test]
    fn a_copy_of_the_trailer_after_the_member_is_trailing_data_on_every_path() {
        // The last 8 bytes still hold the right CRC-32 and ISIZE: only the
        // number of bytes the member used tells the difference.
        let raw = gzip(b"{\"Records\":[{\"eventName\":\"GetObject\"}]}", 6);
        let trailer = raw[raw.len() - 8..].to_vec();
        let forged = [raw, trailer].concat();
        assert!(!fast_path_takes(&forged, LIMITS));
        let expected = Err(InflateError::TrailingData { extra_bytes: 8 });
        assert_eq!(inspect(&forged, LIMITS).inflated, expected);
        let (outcome, _) = whole(&mut BodyInspector::default(), &forged, LIMITS);
        assert_eq!(outcome.inflated, expected);
    }

    #[test]
    fn header_crc_and_limits_the_fast_path_cannot_judge_go_to_streaming() {
        let data = pseudo_random(3, 5_000, true);
        // libdeflate skips FHCRC: a wrong one must still be refused.
        let bad_crc = gzip_with_all_header_fields(&data, false);
        assert!(!fast_path_takes(&bad_crc, LIMITS));
        assert!(matches!(
            inspect(&bad_crc, LIMITS).inflated,
            Err(InflateError::Corrupt(_))
        ));
        let good_crc = gzip_with_all_header_fields(&data, true);
        assert_eq!(
            inspect(&good_crc, LIMITS).inflated.map(|i| i.sha256),
            Ok(sha256(&data))
        );
        // Over the size limit: streaming reports it.
        let tight = InflateLimits {
            max_inflated_bytes: 4_999,
            max_ratio: 2000,
        };
        let raw = gzip(&data, 6);
        assert!(!fast_path_takes(&raw, tight));
        assert_eq!(
            inspect(&raw, tight).inflated,
            Err(InflateError::TooLarge { limit: 4_999 })
        );
        // A content over the ratio floor that a low ratio could stop part-way.
        let zeros = gzip(&vec![0u8; 3 * 1024 * 1024], 9);
        let strict = InflateLimits {
            max_inflated_bytes: 64 << 20,
            max_ratio: 10,
        };
        assert!(!fast_path_takes(&zeros, strict));
        assert_eq!(
            inspect(&zeros, strict).inflated,
            Err(InflateError::RatioExceeded { limit: 10 })
        );
        assert!(fast_path_takes(&zeros, LIMITS));
    }

    /// Streams the gzip of `total_zeros` zero bytes into `inspector`, stopping as
    /// soon as it reports a failure; returns the raw bytes fed.
    fn feed_zero_bomb(inspector: &mut GzipInspector, total_zeros: u64) -> u64 {
        struct Feed<'a>(&'a mut GzipInspector);
        impl Write for Feed<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let zeros = vec![0u8; 1024 * 1024];
        let mut encoder = GzEncoder::new(Feed(inspector), Compression::best());
        let mut written = 0;
        while written < total_zeros {
            encoder.write_all(&zeros).expect("write");
            written += zeros.len() as u64;
            if encoder.get_ref().0.failure().is_some() {
                break;
            }
        }
        let feed = encoder.finish().expect("finish");
        feed.0.raw_len()
    }

    #[test]
    fn gzip_bomb_hits_ratio_limit_early() {
        let limits = InflateLimits {
            max_inflated_bytes: 4 * 1024 * 1024 * 1024,
            max_ratio: 100,
        };
        let mut inspector = GzipInspector::new(limits);
        let fed = feed_zero_bomb(&mut inspector, 1024 * 1024 * 1024);
        // A 1 GiB bomb compresses to ~1 MiB; it must be stopped within the first blocks.
        assert!(fed < 256 * 1024, "fed {fed} raw bytes before stopping");
        assert_eq!(
            inspector.finish().inflated,
            Err(InflateError::RatioExceeded { limit: 100 })
        );
    }

    #[test]
    fn gzip_bomb_hits_size_limit() {
        let limits = InflateLimits {
            max_inflated_bytes: 8 * 1024 * 1024,
            max_ratio: u64::MAX,
        };
        let mut inspector = GzipInspector::new(limits);
        let fed = feed_zero_bomb(&mut inspector, 1024 * 1024 * 1024);
        assert!(fed < 256 * 1024, "fed {fed} raw bytes before stopping");
        assert_eq!(
            inspector.finish().inflated,
            Err(InflateError::TooLarge {
                limit: 8 * 1024 * 1024
            })
        );
    }

    #[test]
    fn small_files_with_huge_ratio_are_fine() {
        let zeros = vec![0u8; RATIO_ENFORCEMENT_FLOOR as usize];
        let raw = gzip(&zeros, 9);
        let limits = InflateLimits {
            max_inflated_bytes: u64::MAX,
            max_ratio: 2,
        };
        assert!(inspect(&raw, limits).inflated.is_ok());
        let one_more = gzip(&[zeros.as_slice(), &[0]].concat(), 9);
        assert_eq!(
            inspect(&one_more, limits).inflated,
            Err(InflateError::RatioExceeded { limit: 2 })
        );
    }

    #[test]
    fn inspect_keeping_keeps_only_what_fits_and_judges_like_inspect() {
        let data = pseudo_random(7, 100_000, true);
        let raw = gzip(&data, 6);
        let (outcome, kept) = inspect_keeping(&raw, LIMITS, 100_000);
        assert_eq!(outcome, inspect(&raw, LIMITS));
        assert_eq!(kept.as_deref(), Some(data.as_slice()));
        assert_eq!(
            outcome.inflated.as_ref().map(|i| i.sha256),
            Ok(sha256(&data))
        );

        let (outcome, kept) = inspect_keeping(&raw, LIMITS, 99_999);
        assert_eq!(outcome, inspect(&raw, LIMITS), "hashes go on past the cap");
        assert!(kept.is_none());

        // A trailer that lies about the size changes neither the outcome nor the
        // kept bytes' fate: the member is rejected and nothing is returned.
        let mut lying = raw.clone();
        let isize_at = lying.len() - 4;
        lying[isize_at..].copy_from_slice(&u32::MAX.to_le_bytes());
        let (outcome, kept) = inspect_keeping(&lying, LIMITS, 1 << 30);
        assert_eq!(outcome, inspect(&lying, LIMITS));
        assert!(outcome.inflated.is_err());
        assert!(kept.is_none());

        // Trailing data: hashed and rejected, nothing kept.
        let (outcome, kept) = inspect_keeping(&[raw.as_slice(), b"x"].concat(), LIMITS, 1 << 30);
        assert_eq!(
            outcome.inflated,
            Err(InflateError::TrailingData { extra_bytes: 1 })
        );
        assert!(kept.is_none());
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_outcome(
            seed in any::<u64>(),
            len in 0usize..150_000,
            compressible in any::<bool>(),
            level in 0u32..=9,
            chunks in proptest::collection::vec(1usize..70_000, 1..8),
        ) {
            let data = pseudo_random(seed, len, compressible);
            let raw = gzip(&data, level);
            let expected = InspectOutcome {
                raw_len: raw.len() as u64,
                raw_sha256: sha256(&raw),
                inflated: Ok(Inflated { len: data.len() as u64, sha256: sha256(&data) }),
            };
            prop_assert_eq!(&inspect(&raw, LIMITS), &expected);
            prop_assert_eq!(&inspect_chunked(&raw, &chunks, LIMITS), &expected);
            prop_assert_eq!(inflate_single_member(&raw, LIMITS), Ok(data));
        }

        #[test]
        fn appended_member_is_always_trailing_data(
            seed in any::<u64>(),
            len in 0usize..40_000,
            second_len in 0usize..2_000,
            chunks in proptest::collection::vec(1usize..50_000, 1..8),
        ) {
            let raw = gzip(&pseudo_random(seed, len, true), 6);
            let second = gzip(&pseudo_random(seed ^ 0xabcd, second_len, false), 1);
            let combined = [raw, second.clone()].concat();
            let expected = Err(InflateError::TrailingData { extra_bytes: second.len() as u64 });
            prop_assert_eq!(&inspect(&combined, LIMITS).inflated, &expected);
            prop_assert_eq!(&inspect_chunked(&combined, &chunks, LIMITS).inflated, &expected);
        }

        #[test]
        fn truncation_is_always_detected(
            seed in any::<u64>(),
            len in 0usize..100_000,
            cut in any::<prop::sample::Index>(),
            chunks in proptest::collection::vec(1usize..50_000, 1..8),
        ) {
            let raw = gzip(&pseudo_random(seed, len, false), 6);
            let keep = 2 + cut.index(raw.len() - 2);
            let truncated = &raw[..keep];
            prop_assert_eq!(&inspect(truncated, LIMITS).inflated, &Err(InflateError::Truncated));
            prop_assert_eq!(&inspect_chunked(truncated, &chunks, LIMITS).inflated, &Err(InflateError::Truncated));
        }

        #[test]
        fn garbage_never_panics_and_is_chunking_independent(
            garbage in proptest::collection::vec(any::<u8>(), 0..5_000),
            gzip_magic in any::<bool>(),
            chunks in proptest::collection::vec(1usize..600, 1..8),
        ) {
            let bytes = if gzip_magic { [&[0x1f, 0x8b, 8][..], &garbage].concat() } else { garbage };
            let whole = inspect(&bytes, LIMITS);
            prop_assert_eq!(&inspect_chunked(&bytes, &chunks, LIMITS), &whole);
            prop_assert_eq!(whole.raw_sha256, sha256(&bytes));
            let _ = inflate_single_member(&bytes, LIMITS);
        }

        #[test]
        fn mutated_gzip_never_panics_and_is_chunking_independent(
            seed in any::<u64>(),
            len in 0usize..60_000,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            chunks in proptest::collection::vec(1usize..40_000, 1..8),
        ) {
            let mut raw = gzip(&pseudo_random(seed, len, true), 6);
            for (index, mask) in &flips {
                let position = index.index(raw.len());
                raw[position] ^= mask;
            }
            let whole = inspect(&raw, LIMITS);
            prop_assert_eq!(&inspect_chunked(&raw, &chunks, LIMITS), &whole);
        }
    }

    proptest! {
        // Each case inflates up to 1.5 MB twice; fewer cases keep the debug build quick.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn the_fast_path_judges_like_the_streaming_inspector(
            seed in any::<u64>(),
            zeros in 0usize..1_500_000,
            len in 0usize..40_000,
            level in 0u32..=9,
            max_ratio in prop::sample::select(vec![10u64, 100, 1000, 2000]),
            max_inflated in prop::sample::select(vec![1_000u64, 1 << 20, 64 << 20]),
            damage in prop::sample::select(vec![0u8, 1, 2, 3, 4, 5]),
            at in any::<prop::sample::Index>(),
        ) {
            let mut data = vec![0u8; zeros];
            data.extend(pseudo_random(seed, len, seed % 2 == 0));
            let mut raw = gzip(&data, level);
            match damage {
                1 => { let i = at.index(raw.len()); raw[i] ^= 0x41; }
                2 => raw.truncate(at.index(raw.len())),
                3 => { let tail = raw[raw.len() - 8..].to_vec(); raw.extend(tail); }
                4 => { let i = raw.len() - 1; raw[i] ^= 1; }
                5 => raw.push(0),
                _ => {}
            }
            let limits = InflateLimits { max_inflated_bytes: max_inflated, max_ratio };
            let (expected, expected_seen) = streamed(&raw, limits);
            let (outcome, seen) = whole(&mut BodyInspector::default(), &raw, limits);
            prop_assert_eq!(&outcome, &expected);
            if expected.inflated.is_ok() {
                prop_assert_eq!(seen, expected_seen);
            }
        }
    }
}
