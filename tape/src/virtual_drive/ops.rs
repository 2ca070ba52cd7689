//! [`TapeDrive`] for [`VirtualDrive`]: the checks a drive makes before the tape moves (a
//! cartridge, online, write protection, record length) and the injected faults; the motion
//! itself is [`Loaded`](super::loaded::Loaded)'s.

use super::{injected, io_error, VirtualDrive};
use crate::{Operation, Status, TapeDrive, TapeError, MAX_RECORD_LEN};

impl TapeDrive for VirtualDrive {
    fn status(&mut self) -> Result<Status, TapeError> {
        let write_protected = self.is_write_protected();
        let Some(l) = &self.loaded else {
            return Ok(Status::default());
        };
        if self.offline {
            return Ok(Status {
                loaded: true,
                write_protected,
                ..Status::default()
            });
        }
        Ok(Status {
            loaded: true,
            online: true,
            write_protected,
            file: Some(l.file()),
            block: l.block_known.then(|| l.block()),
            beginning_of_tape: l.pos == 0,
            end_of_data: l.at_end_of_data(),
            early_warning: l.past_early_warning(),
        })
    }

    fn write_record(&mut self, rec: &[u8]) -> Result<(), TapeError> {
        self.ready()?;
        if self.faults.offline_after_writes == Some(self.writes) {
            self.faults.offline_after_writes = None;
            let sync = self.config.sync_filemarks;
            let l = self.ready()?;
            // What the drive accepted before stays on the tape.
            if let Err(e) = l.cart.flush(sync) {
                tracing::warn!(cartridge = %l.name, error = %e, "flushing as the drive goes offline");
            }
            tracing::info!(cartridge = %l.name, "injected fault: the drive goes offline");
            self.offline = true;
            return Err(TapeError::Offline);
        }
        if self.is_write_protected() {
            return Err(TapeError::WriteProtected);
        }
        if rec.is_empty() || rec.len() > MAX_RECORD_LEN {
            return Err(TapeError::InvalidRecordLength { len: rec.len() });
        }
        if self.faults.write_error_after == Some(self.writes) {
            self.faults.write_error_after = None;
            let l = self.ready()?;
            tracing::info!(cartridge = %l.name, "injected fault: write error");
            return Err(injected(Operation::WriteRecord, l.cart.path()));
        }
        self.ready()?.write_record(rec)?;
        self.writes += 1;
        Ok(())
    }

    fn read_record(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        self.ready()?;
        let inject = self.faults.read_error_after == Some(self.reads);
        self.reads += 1;
        if inject {
            self.faults.read_error_after = None;
            let l = self.ready()?;
            tracing::info!(cartridge = %l.name, "injected fault: read error");
            return Err(injected(Operation::ReadRecord, l.cart.path()));
        }
        self.ready()?.read_record(buf)
    }

    fn write_filemarks(&mut self, n: u32) -> Result<(), TapeError> {
        let sync = self.config.sync_filemarks;
        let protected = self.is_write_protected();
        self.ready()?;
        if n > 0 && protected {
            return Err(TapeError::WriteProtected);
        }
        if n > 0 {
            let inject = self.faults.filemark_error_after == Some(self.filemarks);
            self.filemarks += 1;
            if inject {
                self.faults.filemark_error_after = None;
                let l = self.ready()?;
                tracing::info!(cartridge = %l.name, "injected fault: write error at a filemark");
                return Err(injected(Operation::WriteFilemarks, l.cart.path()));
            }
        }
        let l = self.ready()?;
        l.write_filemarks(n, sync)
    }

    fn space_files(&mut self, n: i64) -> Result<(), TapeError> {
        let sync = self.config.sync_filemarks;
        self.ready()?.space_files(n, sync)
    }

    fn space_records(&mut self, n: i64) -> Result<(), TapeError> {
        self.ready()?.space_records(n)
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        let sync = self.config.sync_filemarks;
        self.ready()?.rewind(sync)
    }

    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        self.ready()?.seek_end_of_data();
        Ok(())
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        let sync = self.config.sync_filemarks;
        let l = self.ready()?;
        l.rewind(sync)?;
        l.cart
            .flush(sync)
            .map_err(|e| io_error(Operation::Unload, l.cart.path(), e))?;
        let name = l.name.clone();
        self.loaded = None;
        tracing::info!(cartridge = %name, "unloaded");
        self.save_state()
    }
}
