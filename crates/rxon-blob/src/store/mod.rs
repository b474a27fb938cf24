//! [`BlobStore`]: uploads and downloads with bounded memory, integrity checks and
//! nothing half-written under a final name.

use crate::config::{Backend, BlobConfig};
use crate::uri::{BlobUri, check_key};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use rxon_core::{ErrorKind, FileMetadata, Result, RxonError};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

mod backend;
mod local;

use backend::{AbortOnDrop, location, normalize_etag, s3, store_error};
use local::{TempPath, local_error, local_tree};

/// One bucket of blob storage, and the transfers in and out of it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> rxon_core::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let input = dir.path().join("input.bin");
/// std::fs::write(&input, b"heavy bytes").unwrap();
///
/// let store = rxon_blob::BlobStore::from_url("memory://")?;
/// let meta = store.upload_file(&input, "s3://rxon-memory/jobs/j1/input.bin").await?;
/// assert_eq!(meta.size, 11);
///
/// let copy = dir.path().join("copy.bin");
/// store.download_verified(&meta, &copy).await?;
/// assert_eq!(std::fs::read(&copy).unwrap(), b"heavy bytes");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    hash: Option<String>,
    part_size: usize,
    threshold: u64,
    concurrency: usize,
    max_dir_entries: usize,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("store", &self.store.to_string())
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("config_hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// Files and bytes moved by a directory transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry {
    /// Path relative to the directory, `/`-separated.
    pub relative: String,
    /// The object's reference.
    pub meta: FileMetadata,
}

impl BlobStore {
    /// A store from a URL with default settings (see [`BlobConfig`]).
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_config(&BlobConfig::new(url))
    }

    /// A store from a full configuration. Nothing is contacted yet; see
    /// [`BlobStore::check_bucket`].
    pub fn from_config(config: &BlobConfig) -> Result<Self> {
        config.validate()?;
        let bucket = config.bucket_name()?;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match config.backend()? {
            Backend::Memory => (Arc::new(InMemory::new()), String::new()),
            Backend::File { root } => {
                std::fs::create_dir_all(&root)
                    .map_err(|e| RxonError::io(format!("cannot create {}", root.display()), e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| RxonError::config(format!("blob url {:?}: {e}", config.url)))?;
                (Arc::new(fs.with_automatic_cleanup(true)), String::new())
            }
            Backend::S3 { bucket, prefix } => (Arc::new(s3(config, &bucket)?), prefix),
        };
        let part_size = usize::try_from(config.part_size)
            .map_err(|_| RxonError::config("part_size does not fit in memory"))?;
        Ok(BlobStore {
            store,
            bucket,
            prefix,
            hash: config.config_hash(),
            part_size,
            threshold: config.multipart_threshold,
            concurrency: config.upload_concurrency,
            max_dir_entries: config.max_dir_entries,
        })
    }

    /// The bucket this store serves.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix put before relative references (from the URL, e.g. `jobs/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This store's configuration hash, for `WorkerCapabilities::s3_config_hash`.
    pub fn config_hash(&self) -> Option<&str> {
        self.hash.as_deref()
    }

    /// Compares the peer's configuration hash with ours: an
    /// [`S3ConfigMismatch`](ErrorKind::S3ConfigMismatch) when both are known and differ.
    pub fn check_peer_hash(&self, theirs: Option<&str>) -> Result<()> {
        crate::check_config_hash(self.hash.as_deref(), theirs)
    }

    /// The underlying object_store, for operations this crate does not wrap.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Parses `uri` (absolute `s3://` or relative to this store's bucket and prefix) and
    /// checks that it names this store's bucket.
    pub fn resolve(&self, uri: &str) -> Result<BlobUri> {
        let parsed = BlobUri::parse(uri, Some(&self.bucket), &self.prefix)?;
        if parsed.bucket() != self.bucket {
            return Err(RxonError::invalid_input(format!(
                "{uri:?} names bucket {:?}; this store serves {:?}",
                parsed.bucket(),
                self.bucket
            )));
        }
        Ok(parsed)
    }

    /// Checks that the bucket exists and the credentials may list it: a missing bucket is
    /// [`NotFound`](ErrorKind::NotFound), refused credentials [`Auth`](ErrorKind::Auth).
    pub async fn check_bucket(&self) -> Result<()> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|e| store_error(&format!("s3://{}/", self.bucket), e))
    }

    /// Size and etag of one object.
    pub async fn head(&self, uri: &str) -> Result<FileMetadata> {
        let uri = self.resolve_file(uri)?;
        let meta = self
            .store
            .head(&location(&uri)?)
            .await
            .map_err(|e| store_error(&uri.to_string(), e))?;
        Ok(FileMetadata {
            uri: uri.to_string(),
            size: meta.size,
            etag: meta.e_tag.as_deref().map(normalize_etag),
            metadata: None,
        })
    }

    /// Deletes one object, or every object under a directory reference.
    pub async fn delete(&self, uri: &str) -> Result<()> {
        let uri = self.resolve(uri)?;
        if uri.is_dir() {
            for entry in self.list_dir(&uri).await? {
                let path = location(&self.resolve(&entry.meta.uri)?)?;
                self.store
                    .delete(&path)
                    .await
                    .map_err(|e| store_error(&entry.meta.uri, e))?;
            }
            return Ok(());
        }
        self.store
            .delete(&location(&uri)?)
            .await
            .map_err(|e| store_error(&uri.to_string(), e))
    }

    /// Uploads a local file. A `dest` ending in `/` is a directory: the file keeps its
    /// name under it. Files above `multipart_threshold` go up in parts of `part_size`,
    /// `upload_concurrency` at a time.
    pub async fn upload_file(&self, src: &Path, dest: &str) -> Result<FileMetadata> {
        let mut uri = self.resolve(dest)?;
        if uri.is_dir() {
            let name = src.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                RxonError::invalid_input(format!(
                    "{} has no UTF-8 file name to upload under {uri}",
                    src.display()
                ))
            })?;
            uri = uri.join(name)?;
        }
        let file = tokio::fs::File::open(src)
            .await
            .map_err(|e| local_error("cannot open", src, e))?;
        self.put_reader(&uri, file).await
    }

    /// Uploads everything `reader` yields to `dest` (a file reference). Memory stays
    /// within about `part_size × (upload_concurrency + 1)` whatever the size.
    ///
    /// Dropping the returned future part-way (a cancelled task, a `select!`) aborts the
    /// multipart upload, so the store keeps no orphaned parts.
    pub async fn upload_reader<R>(&self, reader: R, dest: &str) -> Result<FileMetadata>
    where
        R: AsyncRead + Unpin + Send,
    {
        let uri = self.resolve_file(dest)?;
        self.put_reader(&uri, reader).await
    }

    /// Uploads a directory tree under `dest` (a directory reference, ending in `/`),
    /// one object per file, in a stable order. Symbolic links to directories are
    /// refused rather than followed; more than `max_dir_entries` files is an error
    /// before anything is sent.
    pub async fn upload_dir(&self, src: &Path, dest: &str) -> Result<Vec<DirEntry>> {
        let dir = self.resolve(dest)?;
        if !dir.is_dir() {
            return Err(RxonError::invalid_input(format!(
                "{dest:?}: a directory upload needs a reference ending in '/'"
            )));
        }
        let (root, max) = (src.to_path_buf(), self.max_dir_entries);
        let files = tokio::task::spawn_blocking(move || local_tree(&root, max))
            .await
            .map_err(|e| {
                RxonError::new(
                    ErrorKind::Internal,
                    format!("listing {}: {e}", src.display()),
                )
            })??;
        let mut out = Vec::with_capacity(files.len());
        for (relative, path) in files {
            let uri = dir.join(&relative)?;
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| local_error("cannot open", &path, e))?;
            let meta = self.put_reader(&uri, file).await?;
            out.push(DirEntry { relative, meta });
        }
        Ok(out)
    }

    /// Uploads a file or a directory: a directory gives one reference for the whole tree
    /// (`…/name/`, its total size, no etag).
    pub async fn upload(&self, src: &Path, dest: &str) -> Result<FileMetadata> {
        let is_dir = tokio::fs::metadata(src)
            .await
            .map_err(|e| local_error("cannot read", src, e))?
            .is_dir();
        if !is_dir {
            return self.upload_file(src, dest).await;
        }
        let dest = if dest.ends_with('/') {
            dest.to_owned()
        } else {
            format!("{dest}/")
        };
        let entries = self.upload_dir(src, &dest).await?;
        Ok(FileMetadata {
            uri: self.resolve(&dest)?.to_string(),
            size: entries.iter().map(|e| e.meta.size).sum(),
            etag: None,
            metadata: None,
        })
    }

    /// Lists the objects under a directory reference (recursively), at most
    /// `max_dir_entries`.
    pub async fn list_dir(&self, dir: &BlobUri) -> Result<Vec<DirEntry>> {
        let prefix = (!dir.key().is_empty()).then(|| location(dir)).transpose()?;
        let mut listing = self.store.list(prefix.as_ref());
        let mut out = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| store_error(&dir.to_string(), e))?;
            let key = meta.location.as_ref();
            let relative = match dir.key() {
                "" => key,
                k => key
                    .strip_prefix(k)
                    .and_then(|r| r.strip_prefix('/'))
                    .ok_or_else(|| {
                        RxonError::protocol(format!("store listed {key:?} outside {dir}"))
                    })?,
            };
            check_key(relative).map_err(|why| {
                RxonError::invalid_input(format!("object {key:?} under {dir} is unsafe: {why}"))
            })?;
            if out.len() == self.max_dir_entries {
                return Err(RxonError::invalid_input(format!(
                    "{dir} holds more than max_dir_entries ({}) objects",
                    self.max_dir_entries
                )));
            }
            out.push(DirEntry {
                relative: relative.to_owned(),
                meta: FileMetadata {
                    uri: dir.join(relative)?.to_string(),
                    size: meta.size,
                    etag: meta.e_tag.as_deref().map(normalize_etag),
                    metadata: None,
                },
            });
        }
        out.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(out)
    }

    /// Downloads `uri` to `dest`: a file reference to the file `dest`, a directory
    /// reference (`…/`) to the directory `dest`. The data is checked against the size
    /// (and etag) the store reports, written under a temporary name and renamed into
    /// place only when complete. Returns the bytes written.
    pub async fn download(&self, uri: &str, dest: &Path) -> Result<u64> {
        let uri = self.resolve(uri)?;
        if uri.is_dir() {
            return self.download_dir(&uri, dest, None).await;
        }
        self.download_file(&uri, dest, None, None).await
    }

    /// Downloads the object `meta` describes and checks it against `meta`: its size,
    /// and its etag when both `meta` and the store have one. A mismatch is an
    /// [`Integrity`](ErrorKind::Integrity) error and leaves nothing under `dest`.
    pub async fn download_verified(&self, meta: &FileMetadata, dest: &Path) -> Result<u64> {
        let uri = self.resolve(&meta.uri)?;
        if uri.is_dir() {
            return self.download_dir(&uri, dest, Some(meta.size)).await;
        }
        self.download_file(&uri, dest, Some(meta.size), meta.etag.as_deref())
            .await
    }

    fn resolve_file(&self, uri: &str) -> Result<BlobUri> {
        let parsed = self.resolve(uri)?;
        if parsed.is_dir() {
            return Err(RxonError::invalid_input(format!(
                "{uri:?} is a directory reference; this operation needs a file"
            )));
        }
        Ok(parsed)
    }

    async fn put_reader<R>(&self, uri: &BlobUri, mut reader: R) -> Result<FileMetadata>
    where
        R: AsyncRead + Unpin + Send,
    {
        let path = location(uri)?;
        let name = uri.to_string();
        // Read up to the threshold: a small object goes up in one request.
        let mut first = Vec::new();
        (&mut reader)
            .take(self.threshold + 1)
            .read_to_end(&mut first)
            .await
            .map_err(|e| RxonError::io(format!("reading the data for {name}"), e))?;
        if first.len() as u64 <= self.threshold {
            let size = first.len() as u64;
            let put = self
                .store
                .put(&path, PutPayload::from(first))
                .await
                .map_err(|e| store_error(&name, e))?;
            return Ok(FileMetadata {
                uri: name,
                size,
                etag: put.e_tag.as_deref().map(normalize_etag),
                metadata: None,
            });
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| store_error(&name, e))?;
        let mut guard = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(
            upload,
            self.part_size,
        )));
        let mut size = first.len() as u64;
        let result: Result<()> = async {
            let writer = guard.writer()?;
            writer.put(Bytes::from(first));
            loop {
                writer
                    .wait_for_capacity(self.concurrency)
                    .await
                    .map_err(|e| store_error(&name, e))?;
                let mut part = Vec::with_capacity(self.part_size);
                let n = (&mut reader)
                    .take(self.part_size as u64)
                    .read_to_end(&mut part)
                    .await
                    .map_err(|e| RxonError::io(format!("reading the data for {name}"), e))?;
                if n == 0 {
                    return Ok(());
                }
                size += n as u64;
                writer.put(Bytes::from(part));
            }
        }
        .await;
        let writer = guard.0.take().ok_or_else(|| {
            RxonError::new(ErrorKind::Internal, "multipart upload already finished")
        })?;
        if let Err(e) = result {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(uri = %name, error = %abort, "aborting a failed multipart upload failed");
            }
            return Err(e);
        }
        let put = writer.finish().await.map_err(|e| store_error(&name, e))?;
        Ok(FileMetadata {
            uri: name,
            size,
            etag: put.e_tag.as_deref().map(normalize_etag),
            metadata: None,
        })
    }

    async fn download_file(
        &self,
        uri: &BlobUri,
        dest: &Path,
        expected_size: Option<u64>,
        expected_etag: Option<&str>,
    ) -> Result<u64> {
        let name = uri.to_string();
        let got = self
            .store
            .get(&location(uri)?)
            .await
            .map_err(|e| store_error(&name, e))?;
        let size = got.meta.size;
        if let Some(want) = expected_size
            && want != size
        {
            return Err(integrity(&name, "size", want.to_string(), size.to_string()));
        }
        if let (Some(want), Some(have)) = (expected_etag, got.meta.e_tag.as_deref())
            && normalize_etag(want) != normalize_etag(have)
        {
            return Err(integrity(
                &name,
                "etag",
                normalize_etag(want),
                normalize_etag(have),
            ));
        }
        let part = TempPath::file_beside(dest).await?;
        let file = tokio::fs::File::create(part.path())
            .await
            .map_err(|e| local_error("cannot create", part.path(), e))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_error(&name, e))?;
            written += chunk.len() as u64;
            if written > size {
                return Err(integrity(
                    &name,
                    "size",
                    size.to_string(),
                    format!("more than {size}"),
                ));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| local_error("cannot write", part.path(), e))?;
        }
        if written != size {
            return Err(integrity(
                &name,
                "size",
                size.to_string(),
                written.to_string(),
            ));
        }
        out.flush()
            .await
            .map_err(|e| local_error("cannot write", part.path(), e))?;
        out.get_ref()
            .sync_all()
            .await
            .map_err(|e| local_error("cannot sync", part.path(), e))?;
        drop(out);
        part.commit(dest).await?;
        Ok(written)
    }

    async fn download_dir(
        &self,
        dir: &BlobUri,
        dest: &Path,
        expected_size: Option<u64>,
    ) -> Result<u64> {
        let entries = self.list_dir(dir).await?;
        let total: u64 = entries.iter().map(|e| e.meta.size).sum();
        if let Some(want) = expected_size
            && want != total
        {
            return Err(integrity(
                &dir.to_string(),
                "total size",
                want.to_string(),
                total.to_string(),
            ));
        }
        let part = TempPath::dir_beside(dest).await?;
        let mut written = 0;
        for entry in &entries {
            // `relative` passed check_key: plain segments only, so it stays inside.
            let target = entry
                .relative
                .split('/')
                .fold(part.path().to_path_buf(), |p, s| p.join(s));
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| local_error("cannot create", parent, e))?;
            }
            let uri = self.resolve(&entry.meta.uri)?;
            written += self
                .download_file(
                    &uri,
                    &target,
                    Some(entry.meta.size),
                    entry.meta.etag.as_deref(),
                )
                .await?;
        }
        part.commit(dest).await?;
        Ok(written)
    }
}

fn integrity(name: &str, what: &str, expected: String, actual: String) -> RxonError {
    RxonError::integrity(format!("{name}: {what} is {actual}, expected {expected}"))
        .with_detail("uri", name)
        .with_detail("expected", expected)
        .with_detail("actual", actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(normalize_etag("\"abc-3\""), "abc-3");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }
}
