//! One regular file: kept from the parent snapshot when unchanged, else read, chunked and its
//! chunks stored; a file that changes while it is read is recorded as read, with a warning.

use super::*;

pub(super) fn unchanged(parent: &Node, m: &Metadata) -> bool {
    parent.kind == NodeKind::File
        && parent.size == m.size()
        && parent.mtime_ns == m.mtime() * 1_000_000_000 + m.mtime_nsec()
        && parent.ctime_ns == m.ctime() * 1_000_000_000 + m.ctime_nsec()
        && parent.inode == m.ino()
}

pub(super) fn file_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    m: &Metadata,
    parent: Option<&Node>,
) -> Result<Node> {
    ctx.files.fetch_add(1, Ordering::Relaxed);
    ctx.bytes.fetch_add(m.size(), Ordering::Relaxed);
    ctx.progress
        .bytes_seen
        .fetch_add(m.size(), Ordering::Relaxed);
    let mut node = with_xattrs_reuse(
        ctx,
        path,
        meta::node_from_metadata(name, m, &ctx.names),
        parent,
    );
    if let Some(p) = parent {
        let packs = || -> Option<Vec<_>> {
            p.content
                .iter()
                .map(|id| ctx.repo.locate(id).map(|l| l.pack))
                .collect()
        };
        if unchanged(p, m) {
            if let Some(packs) = packs() {
                packs.into_iter().for_each(|pk| ctx.uses(pk));
                node.content = p.content.clone();
                return Ok(node);
            }
        }
    }
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME)
        .open(path)
        .or_else(|_| {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        })
        .map_err(|e| Error::io(path.display(), e))?;
    let (content, size) = match chunk_stream(ctx.repo.chunker(), &mut f, ctx.progress, &|d| {
        ctx.save(BlobKind::Data, d)
    }) {
        Ok(x) => x,
        Err(StreamError::Source(e)) => return Err(Error::io(path.display(), e)),
        Err(StreamError::Repo(e)) => return Err(e),
    };
    let after = f.metadata().map_err(|e| Error::io(path.display(), e))?;
    if after.size() != m.size()
        || after.mtime() != m.mtime()
        || after.mtime_nsec() != m.mtime_nsec()
        || size != m.size()
    {
        ctx.warn(format!(
            "{}: file changed while it was read",
            path.display()
        ));
        // Record what was read, with the metadata seen after the read.
        node = with_xattrs(
            ctx,
            path,
            meta::node_from_metadata(name, &after, &ctx.names),
        );
        node.size = size;
    }
    node.content = content;
    Ok(node)
}

pub(super) enum StreamError {
    /// Reading the source failed: a warning for that file.
    Source(std::io::Error),
    /// Storing failed: the backup stops.
    Repo(Error),
}

pub(super) type SaveFn<'a> = dyn Fn(&[u8]) -> Result<(BlobId, u64)> + 'a;

/// Chunks a stream and stores its chunks with `save`. Returns the chunk ids and the byte count.
pub(super) fn chunk_stream(
    chunker: &crate::format::chunker::Chunker,
    r: &mut dyn Read,
    progress: &Progress,
    save: &SaveFn,
) -> std::result::Result<(Vec<BlobId>, u64), StreamError> {
    let max = chunker.params().max;
    let mut buf = vec![0u8; 16 * 1024];
    let (mut start, mut end, mut eof) = (0usize, 0usize, false);
    let mut ids = Vec::new();
    let mut total = 0u64;
    loop {
        if !eof && end - start < max {
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            while end < max && !eof {
                if end == buf.len() {
                    buf.resize((buf.len() * 2).min(max.max(64 * 1024)), 0);
                }
                match r.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        end += n;
                        total += n as u64;
                        progress.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StreamError::Source(e)),
                }
            }
        }
        if start == end && eof {
            break;
        }
        let n = chunker.cut(&buf[start..end], eof).unwrap_or(end - start);
        let (id, added) = save(&buf[start..start + n]).map_err(StreamError::Repo)?;
        progress.bytes_added.fetch_add(added, Ordering::Relaxed);
        ids.push(id);
        start += n;
    }
    Ok((ids, total))
}
