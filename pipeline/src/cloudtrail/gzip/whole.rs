//! Whole-buffer inflation of one gzip member with libdeflate, for bodies held
//! in memory: the fast path of [`super::inspect`] and [`super::BodyInspector`].
//!
//! libdeflate inflates a whole buffer in one call, about twice as fast as a
//! streaming inflater fed in blocks, and checks the trailer's CRC-32 and ISIZE
//! itself. It is used only where its verdict is sure to be the streaming
//! inspector's (see [`candidate_size`]); anything else, including every body
//! libdeflate refuses, goes through the streaming inspector, which then decides
//! the exact outcome. So the fast path changes speed, never a verdict.
//!
//! This is the crate's only `unsafe` code: the safe `libdeflater` wrapper does
//! not expose how many input bytes the member used, which is what tells a
//! complete member from one followed by trailing data.

use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_SUCCESS,
};

use super::{
    InflateLimits, BLOCK_LEN, CM_DEFLATE, FIXED_HEADER_LEN, FLAG_FHCRC, FLAG_RESERVED, GZIP_MAGIC,
    RATIO_ENFORCEMENT_FLOOR, TRAILER_LEN,
};

/// Bodies whose content inflates to more than this go through the streaming
/// inspector: the fast path holds the whole content in memory.
pub const WHOLE_MAX_INFLATED: u64 = 8 * 1024 * 1024;

/// Header flags left to the streaming inspector: FHCRC (libdeflate skips the
/// header CRC; the streaming inspector checks it) and the reserved bits.
const FLAGS_LEFT_TO_STREAMING: u8 = FLAG_FHCRC | FLAG_RESERVED;

/// The inflated size the fast path would allocate for `bytes`, when its
/// verdict on them is sure to be the streaming inspector's; `None` when the
/// streaming inspector must decide. The trailer's ISIZE is the size claimed
/// (untrusted: libdeflate fails on a member that does not inflate to exactly
/// that many bytes). With the claimed size `n`:
///
/// * `n` ≤ `max_inflated_bytes`: the streaming inspector fails `TooLarge`
///   exactly when the content passes that limit.
/// * `n` ≤ [`RATIO_ENFORCEMENT_FLOOR`], or `n` ≤ `max_ratio` × min(`BLOCK_LEN`,
///   body length): the streaming inspector compares the bytes inflated so far
///   (never more than `n`) with `max_ratio` × the raw bytes handed over so far
///   (never fewer than the first block), so its ratio limit cannot fire.
pub fn candidate_size(bytes: &[u8], limits: InflateLimits) -> Option<usize> {
    if bytes.len() < FIXED_HEADER_LEN + TRAILER_LEN {
        return None;
    }
    let (magic, rest) = bytes.split_first_chunk::<2>()?;
    let [method, flags, ..] = *rest else {
        return None;
    };
    if *magic != GZIP_MAGIC || method != CM_DEFLATE || flags & FLAGS_LEFT_TO_STREAMING != 0 {
        return None;
    }
    let (_, tail) = bytes.split_last_chunk::<4>()?;
    let claimed = u64::from(u32::from_le_bytes(*tail));
    if claimed > limits.max_inflated_bytes || claimed > WHOLE_MAX_INFLATED {
        return None;
    }
    let first_block = bytes.len().min(BLOCK_LEN) as u64;
    if claimed > RATIO_ENFORCEMENT_FLOOR && claimed > limits.max_ratio.saturating_mul(first_block) {
        return None;
    }
    usize::try_from(claimed).ok()
}

/// One libdeflate decompressor (about 11 KB of tables), reused call after call.
pub struct WholeInflater {
    decompressor: NonNull<libdeflate_decompressor>,
}

// SAFETY: a libdeflate decompressor is plain heap memory with no tie to the
// thread that allocated it; `&mut self` on every use keeps it to one caller at
// a time.
unsafe impl Send for WholeInflater {}

impl std::fmt::Debug for WholeInflater {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WholeInflater")
            .finish_non_exhaustive()
    }
}

impl WholeInflater {
    /// A fresh decompressor; `None` if libdeflate could not allocate one.
    pub fn new() -> Option<Self> {
        // SAFETY: no arguments; the result is checked for NULL.
        let pointer = unsafe { libdeflate_alloc_decompressor() };
        NonNull::new(pointer).map(|decompressor| Self { decompressor })
    }

    /// Inflates the gzip member that must make up all of `body` into `out`.
    /// `Some(n)` only when libdeflate decoded one valid member (header,
    /// deflate data, CRC-32 and ISIZE) that used every byte of `body`, and
    /// wrote `n` bytes at the start of `out`. `None` for anything else: bad
    /// data, content longer than `out`, or bytes after the member.
    pub fn member(&mut self, body: &[u8], out: &mut [u8]) -> Option<usize> {
        let mut used_in = 0usize;
        let mut written = 0usize;
        // SAFETY: the input and output pointers and lengths come from live
        // slices borrowed for the whole call; libdeflate reads at most
        // `body.len()` bytes, writes at most `out.len()` bytes, and writes the
        // two counts through pointers to locals. The decompressor is valid
        // (allocated in `new`, freed only in `drop`) and used by this caller
        // alone (`&mut self`).
        let result = unsafe {
            libdeflate_gzip_decompress_ex(
                self.decompressor.as_ptr(),
                body.as_ptr().cast(),
                body.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &raw mut used_in,
                &raw mut written,
            )
        };
        (result == libdeflate_result_LIBDEFLATE_SUCCESS
            && used_in == body.len()
            && written <= out.len())
        .then_some(written)
    }
}

impl Drop for WholeInflater {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once.
        unsafe { libdeflate_free_decompressor(self.decompressor.as_ptr()) }
    }
}
