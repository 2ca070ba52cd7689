//! `bakfs mount` and `bakfs umount`.
//!
//! `bakfs mount DIR` returns once the mount answers: it starts itself again in the background
//! (`--daemon-child`), hands it the password through a pipe, and waits for the line `ready` on
//! another. `--foreground` serves in this process until SIGTERM, SIGINT or SIGHUP unmounts, and
//! tells systemd (`Type=notify`) when the mount is ready.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bakfs_core::vfs::{Options, Vfs};
use nix::sys::signal::{SigSet, Signal};

use crate::args::MountArgs;
use crate::context::Ctx;

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<u8> {
    if !a.foreground && !a.daemon_child {
        return spawn_background(ctx, &a);
    }
    if a.daemon_child {
        // Out of the caller's session and directory: a closed terminal does not end the mount,
        // and the process keeps no directory busy.
        let _ = nix::unistd::setsid();
    }
    // Before any thread exists, so that every thread inherits the mask and the signal
    // thread below is the one that receives them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("blocking signals")?;
    let r = serve(ctx, &a, signals);
    if a.daemon_child {
        if let Err(e) = &r {
            println!("error {} {e:#}", crate::exit_code_of(e));
        }
    }
    r
}

fn serve(ctx: &Ctx, a: &MountArgs, signals: SigSet) -> Result<u8> {
    bakfs_fs::recover_stale(&a.mountpoint)?;
    refuse_non_empty(&a.mountpoint)?;
    let repo = ctx.open_repo()?;
    let fsname = format!("bakfs:{}", repo.id());
    let opts = Options {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        blob_cache_bytes: a.cache_size.max(8) << 20,
        ..Options::default()
    };
    let vfs = Arc::new(Vfs::new(repo, opts)?);
    let count = vfs.snapshot_count();
    let mounted = bakfs_fs::mount(
        vfs,
        &a.mountpoint,
        &bakfs_fs::MountOptions {
            allow_other: a.allow_other,
            fsname: fsname.clone(),
            threads: a.threads,
        },
    )
    .with_context(|| format!("mounting on {}", a.mountpoint.display()))?;
    let mp = mounted.mountpoint().to_path_buf();
    // Through the kernel and back: the mount answers.
    std::fs::metadata(&mp)
        .with_context(|| format!("{} does not answer after mounting", mp.display()))?;
    bakfs_fs::tune_readahead(&mp);
    tracing::info!("mounted {fsname} at {} ({count} snapshots)", mp.display());
    if a.daemon_child {
        println!("ready {count} {}", mp.display());
        let _ = std::io::stdout().flush();
        // The caller has gone; nothing more to say on that pipe.
    } else if !ctx.global.json {
        eprintln!(
            "mounted {count} snapshots at {}; Ctrl-C or `bakfs umount {}` to unmount",
            mp.display(),
            mp.display()
        );
    }
    sd_notify("READY=1");
    let sig_mp = mp.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!("{sig}: unmounting {}", sig_mp.display());
                sd_notify("STOPPING=1");
                if let Err(e) = bakfs_fs::unmount(&sig_mp) {
                    tracing::error!("unmounting {}: {e}", sig_mp.display());
                }
            }
        })?;
    mounted.wait().context("serving the mount")?;
    tracing::info!("{} unmounted", mp.display());
    Ok(crate::exit::OK)
}

/// Refuses a mount point that is not an empty directory: mounting there would hide what it holds
/// (the very files that were backed up, say) until unmounted. Called after a stale bakfs mount
/// was cleared away and a live one refused.
fn refuse_non_empty(dir: &Path) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading mount point {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading mount point {}", dir.display()))?;
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort();
    let more = match entries.len() - 1 {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    bail!(
        "{}: not an empty directory (it holds {:?}{more}): mounting there would hide what it \
         holds until unmounted; mount on an empty directory",
        dir.display(),
        entries[0]
    )
}

/// Tells systemd (if it started us with `Type=notify`) about our state.
fn sd_notify(msg: &str) {
    bakfs_host::notify::notify(msg);
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}", p.display()))
}

fn spawn_background(ctx: &Ctx, a: &MountArgs) -> Result<u8> {
    // Checks that need no password first, so that mistakes show at once.
    bakfs_fs::recover_stale(&a.mountpoint)?;
    refuse_non_empty(&a.mountpoint)?;
    let repo = absolute(&ctx.repo_path()?)?;
    let pw = ctx.password()?;
    let state = ctx.state_dir();
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let log_path = state.join("mount.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut args: Vec<std::ffi::OsString> = vec!["--repo".into(), repo.into()];
    if let Some(c) = &ctx.global.config {
        args.extend(["--config".into(), absolute(c)?.into()]);
    }
    args.extend(["--state-dir".into(), absolute(&state)?.into()]);
    for _ in 0..ctx.global.verbose.max(1) {
        args.push("-v".into());
    }
    args.extend([
        "mount".into(),
        absolute(&a.mountpoint)?.into(),
        "--threads".into(),
        a.threads.to_string().into(),
        "--cache-size".into(),
        a.cache_size.to_string().into(),
        "--daemon-child".into(),
    ]);
    if a.allow_other {
        args.push("--allow-other".into());
    }
    let exe = std::env::current_exe().context("finding the bakfs binary")?;
    let mut child = Command::new(exe)
        .args(&args)
        .env("BAKFS_PASSWORD_FILE", "/dev/stdin")
        .env_remove("BAKFS_PASSWORD")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the mount process")?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut line = pw.to_vec();
        line.push(b'\n');
        stdin.write_all(&line).context("passing the password")?;
    }
    let out = child
        .stdout
        .take()
        .context("no pipe from the mount process")?;
    for line in BufReader::new(out).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("ready ") {
            let (count, mp) = rest.split_once(' ').unwrap_or((rest, ""));
            if ctx.global.json {
                ctx.print_json(&serde_json::json!({ "mountpoint": mp, "snapshots": count.parse::<u64>().unwrap_or(0), "pid": child.id(), "log": log_path }))?;
            } else {
                println!("mounted {count} snapshots at {mp} (pid {}; log {}); unmount with `bakfs umount {mp}`", child.id(), log_path.display());
            }
            return Ok(crate::exit::OK);
        }
        if let Some(rest) = line.strip_prefix("error ") {
            let (code, msg) = rest.split_once(' ').unwrap_or(("1", rest));
            let _ = child.wait();
            eprintln!("bakfs: {msg}");
            return Ok(code.parse().unwrap_or(crate::exit::ERROR));
        }
    }
    let status = child.wait()?;
    bail!(
        "the mount process ended ({status}) without mounting; see {}",
        log_path.display()
    )
}

pub fn umount(ctx: &Ctx, mountpoint: &Path) -> Result<u8> {
    if !bakfs_fs::recover_stale(mountpoint).unwrap_or(false) {
        match bakfs_fs::is_mounted(mountpoint) {
            Some(t) if t.starts_with("fuse.bakfs") => bakfs_fs::unmount(mountpoint)
                .with_context(|| format!("unmounting {}", mountpoint.display()))?,
            Some(t) => bail!("{}: not a bakfs mount (it is {t})", mountpoint.display()),
            None => bail!("{}: nothing is mounted there", mountpoint.display()),
        }
    }
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({ "unmounted": mountpoint }))?;
    } else {
        println!("unmounted {}", mountpoint.display());
    }
    Ok(crate::exit::OK)
}
