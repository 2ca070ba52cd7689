//! `init` and `key`.

use anyhow::{bail, Result};
use bakfs_core::format::crypto::KdfParams;
use bakfs_core::format::id::KeyId;
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
    let repo = Repository::init(location.backend(), &pw, kdf(), comment())?;
    if let Ok(mut cat) = ctx.catalog() {
        let _ = cat.touch_repository(
            &repo.id(),
            &location.to_string(),
            bakfs_core::timefmt::now_ns(),
        );
    }
    if ctx.global.json {
        ctx.print_json(
            &serde_json::json!({"id": repo.id().to_hex(), "path": location.to_string()}),
        )?;
    } else {
        println!("created repository {} at {}", repo.id().short(), location);
        println!("keep the password safe: without it the data cannot be read");
    }
    Ok(0)
}

pub fn key(ctx: &Ctx, cmd: KeyCmd) -> Result<u8> {
    let repo = ctx.open_repo()?;
    match cmd {
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
