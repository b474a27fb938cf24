//! Worker helpers: a task's `params_metadata` to local files, output files to a result's
//! `data_metadata`.

use crate::store::BlobStore;
use crate::uri::check_segment;
use rxon_core::{ErrorKind, FileMetadata, Result, RxonError, TaskPayload};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl BlobStore {
    /// Downloads every entry of `payload.params_metadata` into `work_dir`, each under its
    /// parameter name (a directory reference becomes a directory), checking sizes and
    /// etags. Returns parameter name → local path.
    ///
    /// The names and references come from the orchestrator: a name that is not a plain
    /// file name (`..`, `a/b`, empty) or an invalid reference is a
    /// [`ParamValidation`](ErrorKind::ParamValidation) error, raised before anything is
    /// written.
    pub async fn fetch_params(
        &self,
        payload: &TaskPayload,
        work_dir: &Path,
    ) -> Result<BTreeMap<String, PathBuf>> {
        let Some(params) = &payload.params_metadata else {
            return Ok(BTreeMap::new());
        };
        for (name, meta) in params {
            check_name(name).map_err(|why| param_error(name, &why))?;
            self.resolve(&meta.uri)
                .map_err(|e| param_error(name, e.message()))?;
        }
        let mut out = BTreeMap::new();
        for (name, meta) in params {
            let path = work_dir.join(name);
            self.download_verified(meta, &path).await?;
            out.insert(name.clone(), path);
        }
        Ok(out)
    }

    /// Uploads each output under `dest` (a directory reference such as
    /// `s3://bucket/results/job-1/`) as `dest/{name}`, a directory as `dest/{name}/…`,
    /// and returns the map for `TaskResult::data_metadata`.
    pub async fn store_outputs<I, S, P>(
        &self,
        outputs: I,
        dest: &str,
    ) -> Result<BTreeMap<String, FileMetadata>>
    where
        I: IntoIterator<Item = (S, P)>,
        S: Into<String>,
        P: AsRef<Path>,
    {
        let dir = self.resolve(dest)?;
        if !dir.is_dir() {
            return Err(RxonError::invalid_input(format!(
                "{dest:?}: outputs go under a directory reference ending in '/'"
            )));
        }
        let mut out = BTreeMap::new();
        for (name, path) in outputs {
            let name = name.into();
            check_name(&name)
                .map_err(|why| RxonError::invalid_input(format!("output name {name:?}: {why}")))?;
            let target = dir.join(&name)?.to_string();
            let meta = self.upload(path.as_ref(), &target).await?;
            out.insert(name, meta);
        }
        Ok(out)
    }
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.contains('/') {
        return Err("a name cannot contain '/'".into());
    }
    check_segment(name)
}

fn param_error(name: &str, why: &str) -> RxonError {
    RxonError::new(
        ErrorKind::ParamValidation,
        format!("params_metadata entry {name:?}: {why}"),
    )
    .with_detail("param", name)
}
