//! `rxon-bench blob <MiB>`: moves one object of that size up to a real S3-compatible
//! server (moto on 127.0.0.1) and back down with `rxon_blob::BlobStore` at its default
//! settings, then reports throughput and the process's peak resident memory.

use rxon::blob::{BlobConfig, BlobStore};
use rxon_testing::s3::MotoServer;
use std::io::Write;
use std::time::Instant;

const MIB: u64 = 1024 * 1024;

pub(crate) async fn run(mib: u64) -> Result<(), String> {
    let server = MotoServer::start()?;
    server.create_bucket("rxon-bench")?;
    let mut config = BlobConfig::new("s3://rxon-bench");
    config.endpoint = Some(server.endpoint());
    config.access_key_id = Some("bench".into());
    config.secret_access_key = Some("bench".into());
    config.request_timeout = std::time::Duration::from_secs(300);
    let store = BlobStore::from_config(&config).map_err(|e| e.to_string())?;

    let dir = std::env::temp_dir().join(format!("rxon-bench-blob-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let src = dir.join("object.bin");
    write_object(&src, mib * MIB)?;
    let baseline = crate::proc_status_kib("VmRSS");

    let started = Instant::now();
    let meta = store
        .upload_file(&src, "bench/object.bin")
        .await
        .map_err(|e| e.to_string())?;
    let up_s = started.elapsed().as_secs_f64();
    let after_upload = crate::proc_status_kib("VmHWM");

    let started = Instant::now();
    let copy = dir.join("copy.bin");
    let bytes = store
        .download_verified(&meta, &copy)
        .await
        .map_err(|e| e.to_string())?;
    let down_s = started.elapsed().as_secs_f64();
    if bytes != mib * MIB {
        return Err(format!("downloaded {bytes} bytes, expected {}", mib * MIB));
    }
    let peak = crate::proc_status_kib("VmHWM");
    println!(
        "{{\"object_mib\":{mib},\"part_mib\":{},\"upload_concurrency\":{},\"upload_mib_s\":{:.1},\"download_mib_s\":{:.1},\"baseline_rss_mib\":{:.1},\"peak_rss_after_upload_mib\":{:.1},\"peak_rss_mib\":{:.1},\"etag\":{:?}}}",
        config.part_size / MIB,
        config.upload_concurrency,
        mib as f64 / up_s,
        mib as f64 / down_s,
        baseline as f64 / 1024.0,
        after_upload as f64 / 1024.0,
        peak as f64 / 1024.0,
        meta.etag.unwrap_or_default(),
    );
    Ok(())
}

/// Writes `size` bytes of a cheap pattern, 1 MiB at a time.
fn write_object(path: &std::path::Path, size: u64) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let mut chunk = vec![0u8; MIB as usize];
    for i in 0..size / MIB {
        chunk
            .iter_mut()
            .enumerate()
            .for_each(|(j, b)| *b = (i as usize ^ j) as u8);
        out.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
