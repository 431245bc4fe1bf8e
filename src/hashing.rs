//! Hashing source files within a budget (docs/configuration.md, "File-backed sources").
//!
//! A scan may read at most `max_hash_bytes_per_scan` bytes and hash for at most
//! `max_hash_seconds_per_scan` (by the injectable clock). A file it cannot finish is not
//! read again from its start: [`Sha256State`] is SHA-256 stopped after whole 64-byte
//! blocks, whose 32-byte state the scan keeps so that the next scan goes on from there.
//! [`HashAllowance`] is what one scan may still spend.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::digest::generic_array::GenericArray;

/// SHA-256 works on blocks of this many bytes; a saved state is always after whole ones.
pub const BLOCK_BYTES: u64 = 64;

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
const INITIAL_STATE: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// SHA-256 of a message read so far in whole 64-byte blocks, which can be saved and
/// resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256State {
    state: [u32; 8],
    hashed_bytes: u64,
}

impl Default for Sha256State {
    fn default() -> Sha256State {
        Sha256State { state: INITIAL_STATE, hashed_bytes: 0 }
    }
}

impl Sha256State {
    /// The state saved by [`Sha256State::to_bytes`] after `hashed_bytes`; None when it
    /// cannot be one (not 32 bytes, or not after whole blocks).
    pub fn from_bytes(bytes: &[u8], hashed_bytes: u64) -> Option<Sha256State> {
        if bytes.len() != 32 || hashed_bytes % BLOCK_BYTES != 0 {
            return None;
        }
        let mut state = [0u32; 8];
        for (word, chunk) in state.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Some(Sha256State { state, hashed_bytes })
    }

    /// The 32 bytes that [`Sha256State::from_bytes`] reads back.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.state.iter().flat_map(|word| word.to_be_bytes()).collect()
    }

    pub fn hashed_bytes(&self) -> u64 {
        self.hashed_bytes
    }

    /// Hash the whole blocks of `data`; returns how many bytes that was (the rest, less
    /// than a block, is left for [`Sha256State::finish`]).
    pub fn update_blocks(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        for block in data.chunks_exact(BLOCK_BYTES as usize) {
            sha2::compress256(&mut self.state, std::slice::from_ref(GenericArray::from_slice(block)));
            used += block.len();
        }
        self.hashed_bytes += used as u64;
        used
    }

    /// The digest of everything hashed so far followed by `tail` (any length).
    pub fn finish(mut self, tail: &[u8]) -> [u8; 32] {
        let used = self.update_blocks(tail);
        let rest = &tail[used..];
        let message_bits = (self.hashed_bytes + rest.len() as u64).wrapping_mul(8);
        let mut last = Vec::with_capacity(2 * BLOCK_BYTES as usize);
        last.extend_from_slice(rest);
        last.push(0x80);
        while last.len() as u64 % BLOCK_BYTES != BLOCK_BYTES - 8 {
            last.push(0);
        }
        last.extend_from_slice(&message_bits.to_be_bytes());
        self.update_blocks(&last);
        let mut digest = [0u8; 32];
        for (chunk, word) in digest.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// What one scan may still spend on hashing: bytes read and time (by the clock given).
/// Without limits (`scan --no-budget`) it never runs out.
pub struct HashAllowance<'c> {
    max_bytes: Option<u64>,
    max_time: Option<Duration>,
    now: &'c dyn Fn() -> DateTime<Utc>,
    /// When the first byte was hashed.
    started_at: Option<DateTime<Utc>>,
    /// When the last read ended.
    last_at: Option<DateTime<Utc>>,
    spent_bytes: u64,
}

impl<'c> HashAllowance<'c> {
    /// The bytes and time it allows, when it is bounded by both.
    pub fn limits(&self) -> Option<(u64, Duration)> {
        self.max_bytes.zip(self.max_time)
    }

    pub fn new(
        max_bytes: Option<u64>,
        max_time: Option<Duration>,
        now: &'c dyn Fn() -> DateTime<Utc>,
    ) -> HashAllowance<'c> {
        HashAllowance { max_bytes, max_time, now, started_at: None, last_at: None, spent_bytes: 0 }
    }

    /// Bytes that may still be read.
    pub fn bytes_left(&self) -> u64 {
        self.max_bytes.map_or(u64::MAX, |max| max.saturating_sub(self.spent_bytes))
    }

    /// The time limit was reached (by the time of the last read), or drainctl was asked to
    /// stop (SIGTERM, SIGINT, SIGHUP): the hash stops where it is, and its progress is
    /// kept for the next scan as when the budget ran out.
    pub fn is_out_of_time(&self) -> bool {
        self.max_time.is_some_and(|max| self.elapsed() >= max)
            || crate::worker::signals::termination_requested()
    }

    /// Nothing more may be read.
    pub fn is_exhausted(&self) -> bool {
        self.bytes_left() == 0 || self.is_out_of_time()
    }

    /// About to read: the clock starts at the first read.
    pub fn start(&mut self) {
        if self.started_at.is_none() {
            let now = (self.now)();
            self.started_at = Some(now);
            self.last_at = Some(now);
        }
    }

    /// `bytes` were read.
    pub fn spend(&mut self, bytes: u64) {
        self.spent_bytes = self.spent_bytes.saturating_add(bytes);
        self.last_at = Some((self.now)());
    }

    pub fn spent_bytes(&self) -> u64 {
        self.spent_bytes
    }

    /// Time spent hashing, from the first read to the end of the last.
    pub fn elapsed(&self) -> Duration {
        match (self.started_at, self.last_at) {
            (Some(start), Some(last)) => (last - start).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn a_hash_stopped_and_resumed_anywhere_is_the_sha256_of_the_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for length in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let message = &data[..length];
            let expected = hex(&Sha256::digest(message));
            for stop_after in (0..=length / 64).map(|blocks| blocks * 64) {
                let mut first = Sha256State::default();
                first.update_blocks(&message[..stop_after]);
                let saved = first.to_bytes();
                let resumed = Sha256State::from_bytes(&saved, first.hashed_bytes()).unwrap();
                assert_eq!(hex(&resumed.finish(&message[stop_after..])), expected, "{length} / {stop_after}");
            }
        }
    }

    #[test]
    fn a_saved_state_that_cannot_be_one_is_refused() {
        assert!(Sha256State::from_bytes(&[0; 31], 0).is_none());
        assert!(Sha256State::from_bytes(&[0; 32], 65).is_none());
        assert!(Sha256State::from_bytes(&[0; 32], 128).is_some());
    }

    #[test]
    fn the_allowance_runs_out_of_bytes_or_of_time_by_the_clock_given() {
        let never = || DateTime::<Utc>::UNIX_EPOCH;
        let mut bytes = HashAllowance::new(Some(100), Some(Duration::from_secs(5)), &never);
        bytes.start();
        bytes.spend(60);
        assert_eq!((bytes.bytes_left(), bytes.is_exhausted()), (40, false));
        bytes.spend(40);
        assert!(bytes.is_exhausted() && !bytes.is_out_of_time());

        // A clock that moves two seconds at every reading.
        let ticks = std::cell::Cell::new(0i64);
        let moving = || {
            ticks.set(ticks.get() + 1);
            DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(2 * ticks.get())
        };
        let mut time = HashAllowance::new(None, Some(Duration::from_secs(5)), &moving);
        time.start();
        time.spend(1);
        time.spend(1);
        assert!(!time.is_out_of_time(), "4 s of 5");
        time.spend(1);
        assert!(time.is_out_of_time() && time.is_exhausted(), "6 s of 5");
        assert_eq!(time.elapsed(), Duration::from_secs(6));

        let unbounded = HashAllowance::new(None, None, &never);
        assert_eq!((unbounded.bytes_left(), unbounded.is_exhausted()), (u64::MAX, false));
    }
}
