//! What the checks share: the records they write (each says which file and block it belongs
//! in, so a read names what it found) and the expectations, which turn a surprise into a
//! [`CheckError`] naming the step.

use std::fmt::Display;

use super::{CheckError, Harness};
use crate::TapeError;

/// The largest record the checks write, and their read buffer.
pub(super) const BUF_LEN: usize = 1 << 20;

/// The length of test record `(file, block)`: a mix of one byte, small, odd and large.
pub(super) fn record_len(file: u64, block: u64) -> usize {
    match (file + block) % 6 {
        0 => 1,
        1 => 512,
        2 => 64 << 10,
        3 => 256 << 10,
        4 => 10_007 + (block as usize % 100) * 37,
        _ => 20,
    }
}

/// The bytes of test record `(file, block)`: its file and block numbers, then a pattern
/// seeded by them (xorshift), cut to [`record_len`].
pub(super) fn record(file: u64, block: u64) -> Vec<u8> {
    record_of_len(file, block, record_len(file, block))
}

pub(super) fn record_of_len(file: u64, block: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&file.to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    let mut x = (file << 32) ^ block ^ 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Names a record read back, for messages.
fn describe(rec: &[u8]) -> String {
    if rec.len() >= 16 {
        let mut f = [0u8; 8];
        let mut b = [0u8; 8];
        f.copy_from_slice(&rec[..8]);
        b.copy_from_slice(&rec[8..16]);
        format!(
            "a {}-byte record starting as ({}, {})",
            rec.len(),
            u64::from_le_bytes(f),
            u64::from_le_bytes(b)
        )
    } else {
        format!("a {}-byte record", rec.len())
    }
}

/// A check in progress: the harness and a read buffer.
pub(super) struct Run<'h> {
    pub h: &'h mut dyn Harness,
    buf: Vec<u8>,
}

impl<'h> Run<'h> {
    pub fn new(h: &'h mut dyn Harness) -> Self {
        Run {
            h,
            buf: vec![0; BUF_LEN],
        }
    }

    /// Writes records `blocks` of file `file`.
    pub fn write_records(
        &mut self,
        file: u64,
        blocks: std::ops::Range<u64>,
    ) -> Result<(), CheckError> {
        for block in blocks {
            let r = self.h.drive().write_record(&record(file, block));
            ok(format_args!("writing record ({file}, {block})"), r)?;
        }
        Ok(())
    }

    /// Writes file `file` of `records` records and its filemark.
    pub fn write_file(&mut self, file: u64, records: u64) -> Result<(), CheckError> {
        self.write_records(file, 0..records)?;
        let r = self.h.drive().write_filemarks(1);
        ok(format_args!("writing the filemark after file {file}"), r)
    }

    /// Reads the next record, which must be `expected`.
    pub fn expect_bytes(&mut self, step: impl Display, expected: &[u8]) -> Result<(), CheckError> {
        let r = self.h.drive().read_record(&mut self.buf);
        let n = ok(&step, r)?;
        let got = &self.buf[..n];
        if got == expected {
            return Ok(());
        }
        let got = if n == 0 {
            "a filemark".to_string()
        } else {
            describe(got)
        };
        Err(mismatch(step, &describe(expected), got))
    }

    /// Reads the next record, which must be test record `(file, block)`.
    pub fn expect_record(&mut self, file: u64, block: u64) -> Result<(), CheckError> {
        self.expect_bytes(
            format_args!("reading record ({file}, {block})"),
            &record(file, block),
        )
    }

    /// Reads records `blocks` of file `file`.
    pub fn expect_records(
        &mut self,
        file: u64,
        blocks: std::ops::Range<u64>,
    ) -> Result<(), CheckError> {
        blocks
            .into_iter()
            .try_for_each(|b| self.expect_record(file, b))
    }

    /// Reads file `file` of `records` records and its filemark.
    pub fn expect_file(&mut self, file: u64, records: u64) -> Result<(), CheckError> {
        self.expect_records(file, 0..records)?;
        self.expect_filemark(format_args!("reading the filemark after file {file}"))
    }

    /// Reads a filemark.
    pub fn expect_filemark(&mut self, step: impl Display) -> Result<(), CheckError> {
        let r = self.h.drive().read_record(&mut self.buf);
        match ok(&step, r)? {
            0 => Ok(()),
            n => Err(mismatch(step, "a filemark", describe(&self.buf[..n]))),
        }
    }

    /// Reads at the end of data.
    pub fn expect_end_of_data(&mut self, step: impl Display) -> Result<(), CheckError> {
        let r = self
            .h
            .drive()
            .read_record(&mut self.buf)
            .map(|n| n.to_string());
        fails(step, r, "end of data", |e| {
            matches!(e, TapeError::EndOfData)
        })
        .map(drop)
    }

    /// The status must say file `file` and block `block`: the block number must be known.
    pub fn expect_at(
        &mut self,
        step: impl Display,
        file: u64,
        block: u64,
    ) -> Result<(), CheckError> {
        let r = self.h.drive().status();
        let s = ok(&step, r)?;
        if s.file == Some(file) && s.block == Some(block) {
            return Ok(());
        }
        Err(mismatch(
            step,
            &format!("file {file} block {block}"),
            format!("file {:?} block {:?}", s.file, s.block),
        ))
    }

    /// The status must say file `file`; the block number may be unknown (as `st` after a
    /// backward space) but if known must be `block`.
    pub fn expect_in_file(
        &mut self,
        step: impl Display,
        file: u64,
        block: u64,
    ) -> Result<(), CheckError> {
        let r = self.h.drive().status();
        let s = ok(&step, r)?;
        if s.file == Some(file) && s.block.is_none_or(|b| b == block) {
            return Ok(());
        }
        Err(mismatch(
            step,
            &format!("file {file} block {block} (or unknown)"),
            format!("file {:?} block {:?}", s.file, s.block),
        ))
    }
}

/// The value of an operation that must work.
pub(super) fn ok<T>(step: impl Display, r: Result<T, TapeError>) -> Result<T, CheckError> {
    r.map_err(|source| CheckError::Tape {
        step: step.to_string(),
        source,
    })
}

/// An operation that must fail as `want` says (`what` names it in messages); the error.
pub(super) fn fails<T: std::fmt::Debug>(
    step: impl Display,
    r: Result<T, TapeError>,
    what: &str,
    want: impl Fn(&TapeError) -> bool,
) -> Result<TapeError, CheckError> {
    match r {
        Err(e) if want(&e) => Ok(e),
        Err(e) => Err(mismatch(step, what, format!("error {e}"))),
        Ok(v) => Err(mismatch(step, what, format!("success ({v:?})"))),
    }
}

/// A fact the check states as a bool.
pub(super) fn expect(step: impl Display, holds: bool, what: &str) -> Result<(), CheckError> {
    if holds {
        Ok(())
    } else {
        Err(mismatch(step, what, "not so".into()))
    }
}

pub(super) fn mismatch(step: impl Display, expected: &str, got: String) -> CheckError {
    CheckError::Mismatch {
        step: step.to_string(),
        expected: expected.to_string(),
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_say_where_they_belong_and_differ() {
        let a = record(3, 7);
        assert_eq!(a.len(), record_len(3, 7));
        assert_eq!(&a[..8], &3u64.to_le_bytes());
        assert_eq!(&a[8..16], &7u64.to_le_bytes());
        assert_ne!(record_of_len(1, 2, 100), record_of_len(2, 1, 100));
        assert!(describe(&a).contains("(3, 7)"));
        assert!((0..12).all(|b| record_len(0, b) <= BUF_LEN && record_len(0, b) > 0));
    }
}
