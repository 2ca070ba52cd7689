//! The `st` driver's ioctl interface (`<linux/mtio.h>`): the structures, the request codes and
//! the operation and status constants bakfs uses. The only unsafe code in bakfs-tape: two
//! ioctls on a file descriptor the caller owns, with structures laid out as the kernel's.

#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

/// `struct mtop`: an operation and its count (`MTIOCTOP`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MtOp {
    pub mt_op: libc::c_short,
    pub mt_count: libc::c_int,
}

/// `struct mtget`: the status `MTIOCGET` fills in.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MtGet {
    pub mt_type: libc::c_long,
    pub mt_resid: libc::c_long,
    pub mt_dsreg: libc::c_long,
    pub mt_gstat: libc::c_long,
    pub mt_erreg: libc::c_long,
    /// `__kernel_daddr_t` (an `int`); -1 when the driver does not know.
    pub mt_fileno: libc::c_int,
    pub mt_blkno: libc::c_int,
}

// Operations (mt_op).
pub const MTFSF: libc::c_short = 1;
pub const MTBSF: libc::c_short = 2;
pub const MTFSR: libc::c_short = 3;
pub const MTBSR: libc::c_short = 4;
pub const MTWEOF: libc::c_short = 5;
pub const MTREW: libc::c_short = 6;
pub const MTOFFL: libc::c_short = 7;
pub const MTEOM: libc::c_short = 12;
pub const MTERASE: libc::c_short = 13;
pub const MTLOAD: libc::c_short = 30;
pub const MTSETBLK: libc::c_short = 20;

// Generic status bits (mt_gstat).
pub const GMT_EOF: libc::c_long = 0x8000_0000;
pub const GMT_BOT: libc::c_long = 0x4000_0000;
pub const GMT_EOT: libc::c_long = 0x2000_0000;
pub const GMT_EOD: libc::c_long = 0x0800_0000;
pub const GMT_WR_PROT: libc::c_long = 0x0400_0000;
pub const GMT_ONLINE: libc::c_long = 0x0100_0000;
pub const GMT_DR_OPEN: libc::c_long = 0x0004_0000;

nix::ioctl_write_ptr!(mtioctop, b'm', 1, MtOp);
nix::ioctl_read!(mtiocget, b'm', 2, MtGet);

/// `ioctl(fd, MTIOCTOP, &op)`.
pub fn op(file: &File, op: MtOp) -> nix::Result<()> {
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and `op` is a valid
    // `struct mtop` the kernel only reads.
    unsafe { mtioctop(file.as_raw_fd(), &op) }.map(drop)
}

/// `ioctl(fd, MTIOCGET, &get)`.
pub fn get(file: &File) -> nix::Result<MtGet> {
    let mut get = MtGet::default();
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and `get` is a
    // `struct mtget` the kernel writes whole.
    unsafe { mtiocget(file.as_raw_fd(), &mut get) }?;
    Ok(get)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // The figures of <linux/mtio.h> on LP64 Linux (x86_64, aarch64): `_IOW('m', 1, struct
    // mtop)` and `_IOR('m', 2, struct mtget)`.
    #[cfg(target_pointer_width = "64")]
    #[test]
    #[allow(clippy::useless_conversion)] // the request type is an int on some C libraries
    fn request_codes_and_layouts_are_the_kernels() {
        assert_eq!(size_of::<MtOp>(), 8);
        assert_eq!(offset_of!(MtOp, mt_count), 4);
        assert_eq!(size_of::<MtGet>(), 48);
        assert_eq!(offset_of!(MtGet, mt_gstat), 24);
        assert_eq!(offset_of!(MtGet, mt_fileno), 40);
        assert_eq!(offset_of!(MtGet, mt_blkno), 44);
        let top = nix::request_code_write!(b'm', 1, size_of::<MtOp>());
        let tget = nix::request_code_read!(b'm', 2, size_of::<MtGet>());
        assert_eq!(u64::from(top), 0x4008_6d01);
        assert_eq!(u64::from(tget), 0x8030_6d02);
    }

    #[test]
    fn operation_numbers_are_the_kernels() {
        assert_eq!(
            [MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW, MTOFFL, MTEOM, MTSETBLK],
            [1, 2, 3, 4, 5, 6, 7, 12, 20]
        );
    }

    /// Where the machine has the kernel's header, the constants are checked against it.
    #[test]
    fn constants_match_the_installed_header() {
        let Ok(h) = std::fs::read_to_string("/usr/include/linux/mtio.h") else {
            eprintln!("skipped: /usr/include/linux/mtio.h is not installed");
            return;
        };
        // `#define MTFSF\t1\t/* ... */` and `#define GMT_EOF(x)  ((x) & 0x80000000)`.
        let define = |name: &str| -> i64 {
            let line = h
                .lines()
                .find(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some("#define")
                        && w.next().is_some_and(|n| n.split('(').next() == Some(name))
                })
                .unwrap_or_else(|| panic!("{name} is not in mtio.h"));
            let v = line
                .split_whitespace()
                .skip(2)
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or_else(|| panic!("no value in {line:?}"))
                .trim_end_matches(')');
            match v.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16).unwrap(),
                None => v.parse().unwrap(),
            }
        };
        for (name, v) in [
            ("MTFSF", MTFSF),
            ("MTBSF", MTBSF),
            ("MTFSR", MTFSR),
            ("MTBSR", MTBSR),
            ("MTWEOF", MTWEOF),
            ("MTREW", MTREW),
            ("MTOFFL", MTOFFL),
            ("MTEOM", MTEOM),
            ("MTSETBLK", MTSETBLK),
            ("MTERASE", MTERASE),
            ("MTLOAD", MTLOAD),
        ] {
            assert_eq!(define(name), i64::from(v), "{name}");
        }
        for (name, v) in [
            ("GMT_EOF", GMT_EOF),
            ("GMT_BOT", GMT_BOT),
            ("GMT_EOT", GMT_EOT),
            ("GMT_EOD", GMT_EOD),
            ("GMT_WR_PROT", GMT_WR_PROT),
            ("GMT_ONLINE", GMT_ONLINE),
            ("GMT_DR_OPEN", GMT_DR_OPEN),
        ] {
            assert_eq!(define(name), v, "{name}");
        }
    }
}
