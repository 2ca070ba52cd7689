//! The tape's motion on a loaded virtual cartridge: where the position goes for each
//! operation, the end of data, the early warning and the end of medium, and the block numbers
//! `st` would know. The checks that come before the tape moves (no cartridge, offline, write
//! protection, injected faults) are the drive's, in `ops.rs`.

use std::io;

use super::cartridge::{Cartridge, FILEMARK_COST};
use super::io_error;
use crate::{CartridgeName, Operation, TapeError};

/// A cartridge in the drive and the tape's position on it.
#[derive(Debug)]
pub(super) struct Loaded {
    pub name: CartridgeName,
    pub cart: Cartridge,
    /// Entry number; `cart.len()` is the end of data.
    pub pos: usize,
    /// Whether `st` would know the block number here (see [`crate::Status::block`]).
    pub block_known: bool,
    /// Whether the early warning was given since the position was last before it.
    pub early_warning_given: bool,
    /// The last operation wrote a record: `st` writes a filemark before a rewind, unload,
    /// backward file space or close.
    pub wrote_last: bool,
}

impl Loaded {
    /// At the beginning of tape, as loading leaves it.
    pub fn new(name: CartridgeName, cart: Cartridge) -> Self {
        Loaded {
            name,
            cart,
            pos: 0,
            block_known: true,
            early_warning_given: false,
            wrote_last: false,
        }
    }

    pub fn file(&self) -> u64 {
        self.cart.filemarks_before(self.pos) as u64
    }

    pub fn block(&self) -> u64 {
        self.cart.block_at(self.pos) as u64
    }

    pub fn at_end_of_data(&self) -> bool {
        self.pos == self.cart.len()
    }

    pub fn past_early_warning(&self) -> bool {
        self.cart.used_at(self.pos) >= self.cart.header().early_warning_point()
    }

    /// After the position moved: the early warning is given again once it is behind, and
    /// the move ends the writing (no filemark of `st`'s own after it).
    fn moved(&mut self) {
        if !self.past_early_warning() {
            self.early_warning_given = false;
        }
        self.wrote_last = false;
    }

    pub fn write_record(&mut self, rec: &[u8]) -> Result<(), TapeError> {
        let header = self.cart.header();
        let used = self.cart.used_at(self.pos);
        if used < header.early_warning_point() {
            self.early_warning_given = false;
        } else if !self.early_warning_given {
            self.early_warning_given = true;
            tracing::info!(cartridge = %self.name, used, "early warning");
            return Err(TapeError::EarlyWarning);
        }
        if used + rec.len() as u64 > header.capacity {
            return Err(TapeError::EndOfMedium);
        }
        let written = self
            .cart
            .truncate(self.pos)
            .and_then(|()| self.cart.append_record(rec));
        if let Err(e) = written {
            return Err(self.write_failed(Operation::WriteRecord, e));
        }
        self.pos += 1;
        self.wrote_last = true;
        Ok(())
    }

    pub fn write_filemarks(&mut self, n: u32, sync: bool) -> Result<(), TapeError> {
        let capacity = self.cart.header().capacity;
        if n > 0 && self.cart.used_at(self.pos) + u64::from(n) * FILEMARK_COST > capacity {
            return Err(TapeError::EndOfMedium);
        }
        let written = self
            .cart
            .truncate(self.pos)
            .and_then(|()| self.cart.append_filemarks(n, sync));
        if let Err(e) = written {
            return Err(self.write_failed(Operation::WriteFilemarks, e));
        }
        if n > 0 {
            self.pos += n as usize;
            self.block_known = true;
        }
        self.wrote_last = false;
        Ok(())
    }

    /// The filemark `st` writes before moving the tape after a write; whether it wrote one.
    /// On a full tape there is no room for it and the file ends at the end of data: a tape
    /// filled to the end must still rewind and unload.
    pub fn implicit_filemark(&mut self, sync: bool) -> Result<bool, TapeError> {
        if !self.wrote_last {
            return Ok(false);
        }
        tracing::debug!(cartridge = %self.name, "a filemark after the last write, as st writes");
        match self.write_filemarks(1, sync) {
            Ok(()) => Ok(true),
            Err(TapeError::EndOfMedium) => {
                tracing::warn!(cartridge = %self.name, "no room for the filemark after the last write: the file ends at the end of data");
                self.wrote_last = false;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// A failed write leaves the file as far as it got: what reached it is only known by
    /// reading it again. The position stays within what is there.
    fn write_failed(&mut self, op: Operation, source: io::Error) -> TapeError {
        let err = io_error(op, self.cart.path(), source);
        if let Err(e) = self.cart.rescan() {
            tracing::warn!(cartridge = %self.name, error = %e, "re-reading the cartridge after a write error");
        }
        self.pos = self.pos.min(self.cart.len());
        self.block_known = false;
        self.wrote_last = false;
        err
    }

    pub fn read_record(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        let entry = self.pos;
        let result = if self.at_end_of_data() {
            Err(TapeError::EndOfData)
        } else if self.cart.is_filemark(entry) {
            self.pos += 1;
            self.block_known = true;
            Ok(0)
        } else {
            let len = self.cart.record_len(entry);
            match usize::try_from(len) {
                Ok(n) if n <= buf.len() => {
                    self.cart
                        .read_record(entry, &mut buf[..n])
                        .map_err(|e| io_error(Operation::ReadRecord, self.cart.path(), e))?;
                    self.pos += 1;
                    Ok(n)
                }
                _ => {
                    self.pos += 1;
                    Err(TapeError::RecordTooLarge {
                        size: Some(len),
                        buffer: buf.len(),
                    })
                }
            }
        };
        self.moved();
        result
    }

    /// `MTFSF`/`MTBSF`, after `st`'s filemark if the last operation wrote.
    pub fn space_files(&mut self, n: i64, sync: bool) -> Result<(), TapeError> {
        let mut count = n.unsigned_abs() as usize;
        // st, after a write, ends the file before MTBSF and spaces over one mark more: the
        // count still means the marks that were there before.
        if n < 0 && self.implicit_filemark(sync)? {
            count += 1;
        }
        let before = self.cart.filemarks_before(self.pos);
        let result = if n > 0 {
            match self.cart.filemark(before + count - 1) {
                Some(fm) => {
                    self.pos = fm + 1;
                    self.block_known = true;
                    Ok(())
                }
                None => {
                    self.pos = self.cart.len();
                    self.block_known = false;
                    Err(TapeError::EndOfData)
                }
            }
        } else if n < 0 {
            if count <= before {
                // Just before the mark: the end of the previous file.
                self.pos = self.cart.filemark(before - count).unwrap_or(0);
                self.block_known = false;
                Ok(())
            } else {
                self.pos = 0;
                self.block_known = true;
                Err(TapeError::BeginningOfTape)
            }
        } else {
            Ok(())
        };
        self.moved();
        result
    }

    /// `MTFSR`/`MTBSR`: the drive crosses a filemark in the way and stops there.
    pub fn space_records(&mut self, n: i64) -> Result<(), TapeError> {
        let count = n.unsigned_abs() as usize;
        let before = self.cart.filemarks_before(self.pos);
        let result = if n > 0 {
            let next_mark = self.cart.filemark(before);
            if self.pos + count <= next_mark.unwrap_or(self.cart.len()) {
                self.pos += count;
                Ok(())
            } else if let Some(fm) = next_mark {
                self.pos = fm + 1;
                self.block_known = true;
                Err(TapeError::Filemark)
            } else {
                self.pos = self.cart.len();
                Err(TapeError::EndOfData)
            }
        } else if n < 0 {
            let prev_mark = before.checked_sub(1).and_then(|i| self.cart.filemark(i));
            let file_start = prev_mark.map_or(0, |fm| fm + 1);
            if self.pos >= file_start + count {
                self.pos -= count;
                Ok(())
            } else if let Some(fm) = prev_mark {
                self.pos = fm;
                self.block_known = false;
                Err(TapeError::Filemark)
            } else {
                self.pos = 0;
                self.block_known = true;
                Err(TapeError::BeginningOfTape)
            }
        } else {
            Ok(())
        };
        self.moved();
        result
    }

    pub fn rewind(&mut self, sync: bool) -> Result<(), TapeError> {
        self.implicit_filemark(sync)?;
        self.pos = 0;
        self.block_known = true;
        self.moved();
        Ok(())
    }

    /// `MTEOM`; `st` gets there by spacing over files, which loses the block number.
    pub fn seek_end_of_data(&mut self) {
        self.pos = self.cart.len();
        self.block_known = false;
        self.moved();
    }
}
