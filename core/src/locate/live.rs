//! Recording a snapshot's files while its backup runs ([`record_during`]): the backup tells
//! each directory's tree as it stores it, and a thread writes the files to the catalog
//! meanwhile, instead of walking every tree again once the snapshot is made. For a first
//! backup of a million files that recording is several seconds of one core's work; the
//! backup rarely keeps both cores busy (design.md §4.2).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use super::RecordError;
use crate::backup::TreeSink;
use crate::catalog::{Catalog, FileCounts};
use crate::format::id::{ContentId, RepoId, SnapshotId};
use crate::format::{NodeKind, Tree};

/// Directories the backup may be ahead of the recording (then it waits): what is queued stays
/// small (a directory of 1,000 files is about 130 KB here).
const QUEUE: usize = 16;

/// One file as recorded: path, content, size, mtime.
type File = (String, ContentId, u64, i64);

enum Msg {
    Files(Vec<File>),
    /// The snapshot was made with this id: commit.
    Made(SnapshotId),
    /// The backup failed: drop what was recorded.
    Failed,
}

/// Sends `Failed` unless the snapshot was made, whatever way the backup ends (a panic too),
/// so that the recording thread always ends.
struct Outcome(SyncSender<Msg>, Option<SnapshotId>);

impl Drop for Outcome {
    fn drop(&mut self) {
        let _ = self.0.send(self.1.map_or(Msg::Failed, Msg::Made));
    }
}

/// Runs `backup` (on this thread), giving it a [`TreeSink`] to put in its options, while
/// another thread records in `cat` the files the sink is told of, as those of the snapshot
/// `backup` makes (`id_of` its id), of `repo_id`, made at `time_ns`. The recording is
/// committed once the snapshot is made, and dropped if the backup fails. Returns the backup's
/// result and, when it made a snapshot, the recording's. The caller runs
/// [`Catalog::prune_files`] once the snapshot itself is recorded.
///
/// Files are recorded in full, not from a parent's record: this is for a snapshot whose
/// parent's files are not recorded (a first backup); [`super::record_files`] does the rest.
pub fn record_during<T, E>(
    cat: &mut Catalog,
    repo_id: &RepoId,
    time_ns: i64,
    backup: impl FnOnce(TreeSink) -> Result<T, E>,
    id_of: impl Fn(&T) -> SnapshotId,
) -> (Result<T, E>, Option<Result<FileCounts, RecordError>>) {
    let (tx, rx) = sync_channel::<Msg>(QUEUE);
    std::thread::scope(|s| {
        let recording = s.spawn(move || -> Option<Result<FileCounts, RecordError>> {
            // Until the snapshot's id is known the recording has a stand-in one, unique to it.
            let stand_in = SnapshotId(
                *blake3::hash(format!("recording {} {time_ns}", std::process::id()).as_bytes())
                    .as_bytes(),
            );
            // A small page cache: the backup holds memory of its own meanwhile. (On 2 cores,
            // 1,000,000 files: 120–127 MiB peak, and the same time as with 32 MiB, 152 MiB.)
            let mut state = cat.begin_files_cached(repo_id, &stand_in, time_ns, 8);
            // Once failed, what it wrote is removed (the recorder dropped) and the rest is not
            // recorded; the messages are still taken, so the backup never waits on it.
            for m in rx.iter() {
                match m {
                    Msg::Files(v) => {
                        if let Ok(r) = state.as_mut() {
                            if let Err(e) =
                                v.iter().try_for_each(|(p, c, n, t)| r.add(p, c, *n, *t))
                            {
                                state = Err(e);
                            }
                        }
                    }
                    Msg::Made(id) => {
                        return Some(match state {
                            Ok(mut r) => r
                                .rename(&id)
                                .and_then(|()| r.commit())
                                .map_err(RecordError::from),
                            Err(e) => Err(e.into()),
                        })
                    }
                    Msg::Failed => return None,
                }
            }
            None
        });
        let mut outcome = Outcome(tx.clone(), None);
        let sink = TreeSink(Arc::new(move |dir: &Path, tree: &Tree| {
            let files = files_of(dir, tree);
            if !files.is_empty() {
                // Gone only if the recording stopped; the backup goes on regardless.
                let _ = tx.send(Msg::Files(files));
            }
        }));
        let result = backup(sink);
        if let Ok(r) = &result {
            outcome.1 = Some(id_of(r));
        }
        drop(outcome);
        let recorded = recording
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (result, recorded)
    })
}

/// The regular files of the directory at `dir` (as backed up), with their paths as
/// [`crate::repo::walk::for_each_change`] names them.
fn files_of(dir: &Path, tree: &Tree) -> Vec<File> {
    let dir = String::from_utf8_lossy(dir.as_os_str().as_bytes());
    let dir = dir.trim_end_matches('/');
    tree.nodes
        .iter()
        .filter(|n| n.kind == NodeKind::File)
        .map(|n| {
            (
                format!("{dir}/{}", String::from_utf8_lossy(&n.name)),
                ContentId::of(&n.content),
                n.size,
                n.mtime_ns,
            )
        })
        .collect()
}
