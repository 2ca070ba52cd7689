//! `init` and `key`.

use std::io::IsTerminal;

use anyhow::{anyhow, bail, Context, Result};
use bakfs_core::format::crypto::KdfParams;
use bakfs_core::format::id::KeyId;
use bakfs_core::format::paper;
use bakfs_core::repo::{self, Repository};

use crate::args::KeyCmd;
use crate::context::{comment, Ctx};

fn kdf() -> KdfParams {
    // Tests may ask for cheap key derivation; never use this for real repositories.
    if std::env::var_os("BAKFS_INSECURE_TEST_KDF").is_some() {
        KdfParams::weak_for_tests()
    } else {
        KdfParams::recommended()
    }
}

pub fn init(ctx: &Ctx) -> Result<u8> {
    let location = ctx.location()?;
    let pw = ctx.password_for_init()?;
    let repo = Repository::init(location.backend()?, &pw, kdf(), comment())?;
    if let Ok(mut cat) = ctx.catalog() {
        let _ = cat.touch_repository(
            &repo.id(),
            &location.to_string(),
            bakfs_core::timefmt::now_ns(),
        );
    }
    let conditional = repo.backend().conditional_writes();
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({
            "id": repo.id().to_hex(),
            "path": location.to_string(),
            "conditional_writes": conditional,
        }))?;
    } else {
        println!("created repository {} at {}", repo.id().short(), location);
        match conditional {
            Some(true) => println!(
                "the server honours create-only writes (If-None-Match: *): the config was \
                 written with one"
            ),
            Some(false) => println!(
                "the server does not honour create-only writes (If-None-Match: *): the config \
                 was written after looking, so two inits racing into this place could both \
                 succeed (docs/object-storage.md)"
            ),
            None => {}
        }
        println!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}

pub fn key(ctx: &Ctx, cmd: KeyCmd) -> Result<u8> {
    // Import is for when no password opens the repository any more.
    if let KeyCmd::Import {
        from,
        new_password_file,
        ..
    } = cmd
    {
        return import_paper(ctx, from.as_deref(), new_password_file.as_deref());
    }
    let repo = ctx.open_repo()?;
    match cmd {
        KeyCmd::Import { .. } => {} // handled above, without opening the repository
        KeyCmd::Export { .. } => {
            let master = repo::unwrap_master(&repo, &ctx.password()?)?;
            let text = paper::encode(&master, &repo.id());
            if ctx.global.json {
                let lines: Vec<&str> = text.lines().collect();
                ctx.print_json(
                    &serde_json::json!({"repository": repo.id().to_hex(), "lines": lines}),
                )?;
            } else {
                eprintln!(
                    "This is the repository's master key: whoever holds it reads every backup, \
                     whatever the passwords. Keep it apart from the backups (a safe), and type \
                     it back with `bakfs key import --paper` if every password is lost."
                );
                print!("{}", text.as_str());
            }
        }
        KeyCmd::List => {
            let keys = repo.keys_list()?;
            if ctx.global.json {
                let v: Vec<_> = keys.iter().map(|(id, w)| serde_json::json!({"id": id.to_hex(), "current": *id == repo.key_id(), "created": w.created, "comment": w.comment})).collect();
                ctx.print_json(&v)?;
            } else {
                for (id, w) in keys {
                    println!(
                        "{} {} {:<25} {}",
                        if id == repo.key_id() { "*" } else { " " },
                        id.short(),
                        w.created,
                        w.comment
                    );
                }
            }
        }
        KeyCmd::Add { new_password_file } => {
            let master = repo::unwrap_master(&repo, &ctx.password()?)?;
            let pw = Ctx::new_password(new_password_file.as_deref())?;
            let id = repo.add_key(&master, &pw, kdf(), comment())?;
            println!("added key {}", id.short());
        }
        KeyCmd::Remove { id } => {
            let keys = repo.keys_list()?;
            let m: Vec<KeyId> = keys
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.to_hex().starts_with(&id.to_ascii_lowercase()))
                .collect();
            if m.len() != 1 {
                bail!("{} keys match {id:?}", m.len());
            }
            if m[0] == repo.key_id() {
                bail!("refusing to remove the key in use; open the repository with another password to remove this one");
            }
            repo.remove_key(&m[0])?;
            println!("removed key {}", m[0].short());
        }
        KeyCmd::Passwd { new_password_file } => {
            let master = repo::unwrap_master(&repo, &ctx.password()?)?;
            let pw = Ctx::new_password(new_password_file.as_deref())?;
            let id = repo.add_key(&master, &pw, kdf(), comment())?;
            repo.remove_key(&repo.key_id())?;
            println!(
                "password changed (key {} replaces {})",
                id.short(),
                repo.key_id().short()
            );
        }
    }
    Ok(0)
}

/// `key import --paper`: types the master key back and adds a password for it.
fn import_paper(
    ctx: &Ctx,
    from: Option<&std::path::Path>,
    new_password_file: Option<&std::path::Path>,
) -> Result<u8> {
    let backend = ctx.location()?.backend()?;
    let config = repo::read_config(backend.as_ref())?;
    let text = zeroize::Zeroizing::new(match from {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "type the lines of the paper key (1: to 8: and check:), then an empty line:"
                );
            }
            let mut all = String::new();
            for line in std::io::stdin().lines() {
                let line = line?;
                let done = line.trim_start().to_ascii_lowercase().starts_with("check");
                all.push_str(&line);
                all.push('\n');
                if done {
                    break;
                }
            }
            all
        }
    });
    let master = paper::decode(&text, &config.id).map_err(|e| anyhow!("paper key: {e}"))?;
    match repo::master_fits(backend.as_ref(), &master) {
        Ok(repo::KeyFit::Opens) => {}
        Ok(repo::KeyFit::Unverifiable) => tracing::warn!(
            "the repository holds no snapshot or index to try the key on: its checksums match, \
             so it is taken"
        ),
        Err(bakfs_core::Error::WrongPassword) => {
            bail!("paper key: its checksums match, but it does not open this repository's files")
        }
        Err(e) => return Err(e.into()),
    }
    let pw = Ctx::new_password(new_password_file)?;
    let id = repo::add_wrapping(backend.as_ref(), &master, &pw, kdf(), comment())?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"added": id.to_hex()}))?;
    } else {
        println!(
            "added key {}: the repository opens with the new password",
            id.short()
        );
    }
    Ok(0)
}
