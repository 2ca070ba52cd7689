//! The master key on paper: a form a person can keep in a safe and type back, for the day every
//! passphrase is lost (`bakfs key export --paper`, `bakfs key import --paper`).
//!
//! ```text
//! bakfs master key, repository 3f2a9c1b…
//! 1: d0a1 9f3c 0b77 e4a2  5e1c
//! …
//! 8: 44b0 19ce 02d7 aa31  c3f0
//! check: 91a7 02fe
//! ```
//!
//! Eight lines of eight bytes in hex, each followed by its own checksum (the first two bytes of
//! a blake3 of the repository id, the line number and the line's bytes), so a typo is found on
//! the line where it was made and a line typed for another repository or in the wrong place is
//! refused; a last `check` line holds four bytes of the blake3 of the whole key (for what a line
//! checksum misses). Case, spaces and blank lines do not matter when typing it back.

use zeroize::Zeroizing;

use crate::format::crypto::MasterKey;
use crate::format::id::RepoId;

const LINES: usize = 8;
const PER_LINE: usize = 8;
const TITLE: &str = "bakfs master key, repository";

/// Why typed-back lines were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaperError {
    /// A line is not `N: xxxx xxxx xxxx xxxx  cccc`.
    #[error("line {0}: expected `{0}: ` then four groups of 4 hex digits and a checksum of 4")]
    Malformed(usize),
    /// A line's checksum does not match what was typed.
    #[error("line {0}: checksum does not match (a typo in this line?)")]
    Checksum(usize),
    /// A key line is missing.
    #[error("line {0} is missing")]
    Missing(usize),
    /// The whole key's check does not match.
    #[error("the `check` line does not match the key (a typo that the line checksums missed?)")]
    Check,
    /// No `check` line.
    #[error("the `check` line is missing")]
    NoCheck,
}

fn line_sum(repo: &RepoId, n: usize, bytes: &[u8]) -> [u8; 2] {
    let mut h = blake3::Hasher::new();
    h.update(b"bakfs paper key v1");
    h.update(&repo.0);
    h.update(&[n as u8]);
    h.update(bytes);
    let d = h.finalize();
    [d.as_bytes()[0], d.as_bytes()[1]]
}

fn key_check(bytes: &[u8]) -> [u8; 4] {
    let d = blake3::hash(bytes);
    let mut c = [0u8; 4];
    c.copy_from_slice(&d.as_bytes()[..4]);
    c
}

fn groups(bytes: &[u8]) -> String {
    bytes
        .chunks(2)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The paper form of `key` for repository `repo` (the lines of the module docs, ending with a
/// newline). It is the key itself: whoever has it reads the repository.
pub fn encode(key: &MasterKey, repo: &RepoId) -> Zeroizing<String> {
    let bytes = key.expose_for_paper();
    let mut out = Zeroizing::new(format!("{TITLE} {}\n", repo.to_hex()));
    for (i, chunk) in bytes.chunks(PER_LINE).enumerate() {
        let n = i + 1;
        out.push_str(&format!(
            "{n}: {}  {}\n",
            groups(chunk),
            hex::encode(line_sum(repo, n, chunk))
        ));
    }
    out.push_str(&format!("check: {}\n", groups(&key_check(bytes))));
    out
}

/// Reads typed-back lines for repository `repo`: the title line and anything that is not a
/// numbered line or the `check` line are ignored.
///
/// # Errors
/// [`PaperError`] naming the first line that is wrong.
pub fn decode(text: &str, repo: &RepoId) -> Result<MasterKey, PaperError> {
    let mut bytes = Zeroizing::new([0u8; LINES * PER_LINE]);
    let mut seen = [false; LINES];
    let mut check: Option<Vec<u8>> = None;
    for raw in text.lines() {
        let Some((label, rest)) = raw.split_once(':') else {
            continue;
        };
        let label = label.trim().to_ascii_lowercase();
        let digits: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
        if label == "check" {
            check = Some(hex::decode(&digits).map_err(|_| PaperError::Check)?);
            continue;
        }
        let Ok(n) = label.parse::<usize>() else {
            continue;
        };
        if !(1..=LINES).contains(&n) {
            return Err(PaperError::Malformed(n));
        }
        let line = Zeroizing::new(hex::decode(&digits).map_err(|_| PaperError::Malformed(n))?);
        if line.len() != PER_LINE + 2 {
            return Err(PaperError::Malformed(n));
        }
        let (data, sum) = line.split_at(PER_LINE);
        if line_sum(repo, n, data) != sum {
            return Err(PaperError::Checksum(n));
        }
        bytes[(n - 1) * PER_LINE..n * PER_LINE].copy_from_slice(data);
        seen[n - 1] = true;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(PaperError::Missing(i + 1));
    }
    let check = check.ok_or(PaperError::NoCheck)?;
    if check != key_check(&bytes[..]) {
        return Err(PaperError::Check);
    }
    Ok(MasterKey::from_paper_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &MasterKey, b: &MasterKey) -> bool {
        a.expose_for_paper() == b.expose_for_paper()
    }

    #[test]
    fn round_trip_ignoring_case_spaces_and_other_lines() {
        let key = MasterKey::generate();
        let repo = RepoId::random();
        let paper = encode(&key, &repo);
        assert_eq!(paper.lines().count(), 10);
        assert!(same(&decode(&paper, &repo).unwrap(), &key));
        let retyped: String = paper
            .lines()
            .rev()
            .map(|l| format!("  {}\n\n", l.to_uppercase().replace(' ', "  ")))
            .collect();
        assert!(same(&decode(&retyped, &repo).unwrap(), &key));
    }

    #[test]
    fn typos_are_found_on_their_line() {
        let key = MasterKey::generate();
        let repo = RepoId::random();
        let paper = encode(&key, &repo);
        let mut lines: Vec<String> = paper.lines().map(String::from).collect();
        // A changed digit in line 3.
        let l = &mut lines[3];
        let i = l.find(": ").unwrap() + 2;
        let c = if &l[i..=i] == "0" { "1" } else { "0" };
        l.replace_range(i..=i, c);
        assert_eq!(
            decode(&lines.join("\n"), &repo).err(),
            Some(PaperError::Checksum(3))
        );
        // Two lines swapped: each checksum binds its line number.
        let mut swapped: Vec<String> = paper.lines().map(String::from).collect();
        let (a, b) = (swapped[1][3..].to_string(), swapped[2][3..].to_string());
        swapped[1].replace_range(3.., &b);
        swapped[2].replace_range(3.., &a);
        assert_eq!(
            decode(&swapped.join("\n"), &repo).err(),
            Some(PaperError::Checksum(1))
        );
        // A line left out, a short line.
        let missing: Vec<&str> = paper.lines().filter(|l| !l.starts_with("5:")).collect();
        assert_eq!(
            decode(&missing.join("\n"), &repo).err(),
            Some(PaperError::Missing(5))
        );
        let short = paper.replacen("7: ", "7: 0", 1);
        assert_eq!(decode(&short, &repo).err(), Some(PaperError::Malformed(7)));
    }

    #[test]
    fn another_repositorys_paper_is_refused() {
        let key = MasterKey::generate();
        let paper = encode(&key, &RepoId::random());
        assert_eq!(
            decode(&paper, &RepoId::random()).err(),
            Some(PaperError::Checksum(1))
        );
    }

    #[test]
    fn the_check_line_is_required() {
        let key = MasterKey::generate();
        let repo = RepoId::random();
        let paper = encode(&key, &repo);
        let without: Vec<&str> = paper.lines().filter(|l| !l.starts_with("check")).collect();
        assert_eq!(
            decode(&without.join("\n"), &repo).err(),
            Some(PaperError::NoCheck)
        );
    }
}
