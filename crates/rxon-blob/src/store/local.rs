//! The local-filesystem side of [`BlobStore`](super::BlobStore): temporary files that
//! become final only by an atomic rename, directory walks, errors.

use rxon_core::{Result, RxonError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) fn local_error(what: &str, path: &Path, e: std::io::Error) -> RxonError {
    RxonError::io(format!("{what} {}: {e}", path.display()), e)
}

/// Maps an object_store error onto the error kinds, naming the object.
/// A temporary file or directory beside the final destination (same filesystem, so the
/// final rename is atomic), removed on drop unless committed.
pub(super) struct TempPath {
    path: PathBuf,
    is_dir: bool,
    committed: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempPath {
    pub(super) async fn file_beside(dest: &Path) -> Result<Self> {
        Self::beside(dest, false).await
    }

    pub(super) async fn dir_beside(dest: &Path) -> Result<Self> {
        Self::beside(dest, true).await
    }

    pub(super) async fn beside(dest: &Path, is_dir: bool) -> Result<Self> {
        let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            RxonError::invalid_input(format!("{} has no file name", dest.display()))
        })?;
        let parent = dest.parent().unwrap_or(Path::new("."));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| local_error("cannot create", parent, e))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".{name}.rxon-part-{}-{n}", std::process::id()));
        if is_dir {
            tokio::fs::create_dir(&path)
                .await
                .map_err(|e| local_error("cannot create", &path, e))?;
        }
        Ok(TempPath {
            path,
            is_dir,
            committed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) async fn commit(mut self, dest: &Path) -> Result<()> {
        if self.is_dir && tokio::fs::metadata(dest).await.is_ok() {
            // rename() onto a non-empty directory fails; replace what was there.
            tokio::fs::remove_dir_all(dest)
                .await
                .map_err(|e| local_error("cannot replace", dest, e))?;
        }
        tokio::fs::rename(&self.path, dest)
            .await
            .map_err(|e| local_error("cannot move into place", dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = if self.is_dir {
                std::fs::remove_dir_all(&self.path)
            } else {
                std::fs::remove_file(&self.path)
            };
        }
    }
}

/// Regular files under `root`, as (`/`-separated relative path, path), sorted.
pub(super) fn local_tree(root: &Path, max: usize) -> Result<Vec<(String, PathBuf)>> {
    const MAX_DEPTH: usize = 64;
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(RxonError::invalid_input(format!(
                "{} is nested deeper than {MAX_DEPTH} directories",
                dir.display()
            )));
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| local_error("cannot read", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| local_error("cannot read", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                RxonError::invalid_input(format!("{} is not UTF-8", entry.path().display()))
            })?;
            let relative = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let link = entry
                .file_type()
                .map_err(|e| local_error("cannot read", &path, e))?;
            let meta =
                std::fs::metadata(&path).map_err(|e| local_error("cannot read", &path, e))?;
            if meta.is_dir() {
                if link.is_symlink() {
                    return Err(RxonError::invalid_input(format!(
                        "{} is a symbolic link to a directory; not followed",
                        path.display()
                    )));
                }
                stack.push((path, relative, depth + 1));
            } else if meta.is_file() {
                if out.len() == max {
                    return Err(RxonError::invalid_input(format!(
                        "{} holds more than max_dir_entries ({max}) files",
                        root.display()
                    )));
                }
                out.push((relative, path));
            } else {
                return Err(RxonError::invalid_input(format!(
                    "{} is neither a regular file nor a directory",
                    path.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}
