//! The virtual library's shelf: creating, listing, removing and write-protecting cartridges.

use std::io;
use std::path::PathBuf;

use super::cartridge::{Cartridge, Header};
use super::{io_error, CartridgeInfo, VirtualDrive, CARTRIDGE_EXT};
use crate::{CartridgeName, Operation, TapeError};

impl VirtualDrive {
    /// The directory of cartridge `name` in the library.
    #[must_use]
    pub fn cartridge_path(&self, name: &CartridgeName) -> PathBuf {
        self.dir.join(format!("{name}.{CARTRIDGE_EXT}"))
    }

    /// Creates a blank cartridge of `capacity_bytes` in the library, its early warning
    /// [`DriveConfig::early_warning_bytes`](super::DriveConfig::early_warning_bytes) before
    /// the end.
    ///
    /// # Errors
    /// As [`create_cartridge_with`](Self::create_cartridge_with).
    pub fn create_cartridge(
        &self,
        name: &CartridgeName,
        capacity_bytes: u64,
    ) -> Result<(), TapeError> {
        self.create_cartridge_with(name, capacity_bytes, self.config.early_warning_bytes)
    }

    /// Creates a blank cartridge of `capacity_bytes` in the library whose early warning comes
    /// `early_warning_bytes` before the end.
    ///
    /// # Errors
    /// [`TapeError::CartridgeExists`]; [`TapeError::InvalidArgument`] when the early warning
    /// would leave no room; [`TapeError::Io`].
    pub fn create_cartridge_with(
        &self,
        name: &CartridgeName,
        capacity_bytes: u64,
        early_warning_bytes: u64,
    ) -> Result<(), TapeError> {
        if early_warning_bytes >= capacity_bytes {
            return Err(TapeError::InvalidArgument(format!(
                "an early warning {early_warning_bytes} bytes before the end leaves no room on \
                 a cartridge of {capacity_bytes} bytes"
            )));
        }
        let path = self.cartridge_path(name);
        let header = Header {
            capacity: capacity_bytes,
            early_warning: early_warning_bytes,
        };
        Cartridge::create(&path, header).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => TapeError::CartridgeExists(name.clone()),
            _ => io_error(Operation::Library, &path, e),
        })?;
        tracing::info!(cartridge = %name, capacity_bytes, early_warning_bytes, "created a virtual cartridge");
        Ok(())
    }

    /// Deletes cartridge `name` from the library.
    ///
    /// # Errors
    /// [`TapeError::DriveOccupied`] while it is loaded; [`TapeError::NoSuchCartridge`];
    /// [`TapeError::Io`].
    pub fn remove_cartridge(&mut self, name: &CartridgeName) -> Result<(), TapeError> {
        if self.loaded.as_ref().is_some_and(|l| &l.name == name) {
            return Err(TapeError::DriveOccupied(name.clone()));
        }
        let path = self.cartridge_path(name);
        std::fs::remove_dir_all(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => TapeError::NoSuchCartridge(name.clone()),
            _ => io_error(Operation::Library, &path, e),
        })?;
        if self.write_protected.remove(name) {
            self.save_state()?;
        }
        Ok(())
    }

    /// The cartridges in the library, by name.
    ///
    /// # Errors
    /// [`TapeError::Io`] or [`TapeError::Corrupt`] when the library or a header cannot be
    /// read.
    pub fn cartridges(&self) -> Result<Vec<CartridgeInfo>, TapeError> {
        let err = |e| io_error(Operation::Library, &self.dir, e);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(err)? {
            let path = entry.map_err(err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(CARTRIDGE_EXT) || !path.is_dir() {
                continue;
            }
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| CartridgeName::new(s).ok())
            else {
                continue;
            };
            let header = Cartridge::read_header(&path)?;
            out.push(CartridgeInfo {
                write_protected: self.write_protected.contains(&name),
                name,
                capacity_bytes: header.capacity,
                early_warning_bytes: header.early_warning,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sets or clears the write-protect tab of cartridge `name`; on a loaded cartridge it
    /// takes effect at once.
    ///
    /// # Errors
    /// [`TapeError::NoSuchCartridge`]; [`TapeError::Io`] saving the state.
    pub fn set_write_protected(
        &mut self,
        name: &CartridgeName,
        protected: bool,
    ) -> Result<(), TapeError> {
        if !self.cartridge_path(name).exists() {
            return Err(TapeError::NoSuchCartridge(name.clone()));
        }
        let changed = if protected {
            self.write_protected.insert(name.clone())
        } else {
            self.write_protected.remove(name)
        };
        if changed {
            self.save_state()?;
        }
        Ok(())
    }
}
