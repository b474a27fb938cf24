//! Blob references: the reference's `parse_uri` and storage configuration hash, and the
//! strict [`BlobUri`] every transfer goes through.

use rxon_core::{Result, RxonError};
use std::fmt;

/// URI scheme of blob references (`s3://bucket/key`; a key ending in `/` is a directory).
pub const URI_SCHEME: &str = "s3";

/// Longest key accepted (S3's own limit, in bytes).
pub const MAX_KEY_LEN: usize = 1024;

/// The reference's `parse_uri`, with its exact semantics: an `s3://bucket/key` URI gives
/// `(bucket, key, is_dir)`; anything else is a path relative to `default_bucket` (an error
/// without one) with its leading `/`s stripped and `prefix` prepended as is.
///
/// `is_dir` is whether `uri` ends with `/`. Like Python's `urlparse`, a `?query` or
/// `#fragment` is cut off the key. This function only splits; [`BlobUri::parse`] also
/// rejects keys that would escape a prefix or a directory.
///
/// ```
/// use rxon_blob::parse_uri;
/// assert_eq!(
///     parse_uri("s3://data/in/a.bin", None, "").unwrap(),
///     ("data".to_owned(), "in/a.bin".to_owned(), false)
/// );
/// assert_eq!(
///     parse_uri("/out/", Some("data"), "jobs/").unwrap(),
///     ("data".to_owned(), "jobs/out/".to_owned(), true)
/// );
/// assert!(parse_uri("relative", None, "").is_err());
/// ```
pub fn parse_uri(
    uri: &str,
    default_bucket: Option<&str>,
    prefix: &str,
) -> Result<(String, String, bool)> {
    let is_dir = uri.ends_with('/');
    if let Some(rest) = uri.strip_prefix("s3://") {
        // urlparse: the authority ends at the first '/', '?' or '#'; the path at '?' or '#'.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let bucket = &rest[..authority_end];
        let after = &rest[authority_end..];
        let path_end = after.find(['?', '#']).unwrap_or(after.len());
        let key = after[..path_end].trim_start_matches('/');
        return Ok((bucket.to_owned(), key.to_owned(), is_dir));
    }
    let Some(bucket) = default_bucket.filter(|b| !b.is_empty()) else {
        return Err(RxonError::invalid_input(format!(
            "cannot parse relative path {uri:?} without a default bucket"
        )));
    };
    let clean = uri.trim_start_matches('/');
    Ok((bucket.to_owned(), format!("{prefix}{clean}"), is_dir))
}

/// The reference's storage configuration hash: the first 16 hex digits of
/// SHA-256(`"{endpoint}|{access_key}|{bucket}"`), or `None` when any part is missing or
/// empty. Workers send it as `WorkerCapabilities::s3_config_hash`.
///
/// ```
/// use rxon_blob::calculate_config_hash;
/// assert_eq!(
///     calculate_config_hash(Some("http://127.0.0.1:9000"), Some("AKIA"), Some("bucket")).as_deref(),
///     Some("24a21b7fb7faf2c8")
/// );
/// assert_eq!(calculate_config_hash(None, Some("AKIA"), Some("bucket")), None);
/// ```
pub fn calculate_config_hash(
    endpoint: Option<&str>,
    access_key: Option<&str>,
    bucket: Option<&str>,
) -> Option<String> {
    let (endpoint, access_key, bucket) = (
        endpoint.filter(|s| !s.is_empty())?,
        access_key.filter(|s| !s.is_empty())?,
        bucket.filter(|s| !s.is_empty())?,
    );
    let input = format!("{endpoint}|{access_key}|{bucket}");
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    Some(
        digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Compares two storage configuration hashes: a mismatch when both are known and differ
/// ([`ErrorKind::S3ConfigMismatch`](rxon_core::ErrorKind::S3ConfigMismatch)); an unknown
/// hash on either side cannot be checked and passes.
pub fn check_config_hash(ours: Option<&str>, theirs: Option<&str>) -> Result<()> {
    match (ours, theirs) {
        (Some(a), Some(b)) if a != b => Err(RxonError::new(
            rxon_core::ErrorKind::S3ConfigMismatch,
            format!("storage configuration hash {b} does not match ours ({a}): the two sides use different storage"),
        )
        .with_detail("expected", a)
        .with_detail("received", b)),
        _ => Ok(()),
    }
}

/// A checked blob reference: a bucket, a key made only of plain path segments (no `.`,
/// `..`, empty segments, backslashes, `?`, `#` or control characters), and whether it
/// names a directory (trailing `/`). Its printed form parses back to itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobUri {
    bucket: String,
    key: String,
    is_dir: bool,
}

impl BlobUri {
    /// Parses with [`parse_uri`]'s rules, then checks the bucket name and every segment
    /// of the key.
    pub fn parse(uri: &str, default_bucket: Option<&str>, prefix: &str) -> Result<Self> {
        let (bucket, key, is_dir) = parse_uri(uri, default_bucket, prefix)?;
        let bad = |why: &str| RxonError::invalid_input(format!("invalid blob URI {uri:?}: {why}"));
        if uri.starts_with("s3://") && uri.contains(['?', '#']) {
            return Err(bad("a blob URI has no query or fragment"));
        }
        check_bucket(&bucket).map_err(|why| bad(&why))?;
        let body = key.strip_suffix('/').unwrap_or(&key);
        if body.is_empty() && !is_dir {
            return Err(bad("no key"));
        }
        if !body.is_empty() {
            check_key(body).map_err(|why| bad(&why))?;
        }
        Ok(BlobUri {
            bucket,
            key: body.to_owned(),
            is_dir,
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    /// The key without a trailing `/` (empty for the root of a bucket).
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Whether the URI names a directory (it ended with `/`).
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }
    /// The reference under this directory for `relative` (`a/b.txt`), each segment
    /// checked like a key's.
    pub fn join(&self, relative: &str) -> Result<BlobUri> {
        check_key(relative).map_err(|why| {
            RxonError::invalid_input(format!("invalid relative key {relative:?}: {why}"))
        })?;
        let key = if self.key.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.key)
        };
        if key.len() > MAX_KEY_LEN {
            return Err(RxonError::invalid_input(format!(
                "key of {} bytes exceeds {MAX_KEY_LEN}",
                key.len()
            )));
        }
        Ok(BlobUri {
            bucket: self.bucket.clone(),
            key,
            is_dir: false,
        })
    }
}

impl fmt::Display for BlobUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{URI_SCHEME}://{}/{}", self.bucket, self.key)?;
        if self.is_dir && !self.key.is_empty() {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// S3 bucket naming rules (3–63 of `a-z 0-9 . -`, starting and ending alphanumeric),
/// relaxed to also allow `_` and upper case, which S3-compatible servers accept.
fn check_bucket(bucket: &str) -> std::result::Result<(), String> {
    if bucket.is_empty() {
        return Err("no bucket".into());
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!(
            "bucket name must be 3 to 63 characters, got {}",
            bucket.len()
        ));
    }
    let ok = bucket
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok || !ends_ok(bucket.bytes().next()) || !ends_ok(bucket.bytes().last()) {
        return Err(format!("bucket name {bucket:?} is not valid"));
    }
    if bucket.contains("..") {
        return Err(format!("bucket name {bucket:?} is not valid"));
    }
    Ok(())
}

/// Every segment of `key` must be a plain name: this is what keeps a key from escaping
/// a prefix in the store or a directory on disk.
pub(crate) fn check_key(key: &str) -> std::result::Result<(), String> {
    if key.len() > MAX_KEY_LEN {
        return Err(format!("key of {} bytes exceeds {MAX_KEY_LEN}", key.len()));
    }
    if key.starts_with('/') {
        return Err("absolute key".into());
    }
    for segment in key.split('/') {
        check_segment(segment)?;
    }
    Ok(())
}

/// One path segment: not empty, not `.` or `..`, no backslash, `?`, `#` or control
/// characters.
pub(crate) fn check_segment(segment: &str) -> std::result::Result<(), String> {
    match segment {
        "" => Err("empty path segment".into()),
        "." | ".." => Err(format!("{segment:?} segment")),
        s if s.contains('\\') => Err("backslash in a path segment".into()),
        // A reference is a URI: in one, '?' and '#' would start a query or a fragment,
        // and the printed reference would name another key.
        s if s.contains(['?', '#']) => Err("'?' or '#' in a key".into()),
        s if s.chars().any(char::is_control) => Err("control character in a key".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// uri, default bucket, prefix → bucket, key, is_dir.
    type Case = (
        &'static str,
        Option<&'static str>,
        &'static str,
        (&'static str, &'static str, bool),
    );

    // Expected values printed by the reference `rxon==1.0b3` (`rxon.blob.parse_uri`).
    #[test]
    fn parse_uri_matches_the_reference() {
        let cases: &[Case] = &[
            (
                "s3://bucket/key.bin",
                None,
                "",
                ("bucket", "key.bin", false),
            ),
            ("s3://bucket/dir/", None, "", ("bucket", "dir/", true)),
            ("s3://b", None, "", ("b", "", false)),
            ("s3://b/a/b/c?x=1#f", None, "", ("b", "a/b/c", false)),
            (
                "/rel/path.txt",
                Some("def"),
                "pre/",
                ("def", "pre/rel/path.txt", false),
            ),
            ("rel/dir/", Some("def"), "", ("def", "rel/dir/", true)),
            ("x", Some("def"), "p", ("def", "px", false)),
            ("s3://bucket//double", None, "", ("bucket", "double", false)),
        ];
        for (uri, bucket, prefix, (b, k, d)) in cases {
            let got = parse_uri(uri, *bucket, prefix).unwrap();
            assert_eq!(got, (b.to_string(), k.to_string(), *d), "{uri}");
        }
        let e = parse_uri("rel", None, "").unwrap_err();
        assert_eq!(e.kind(), rxon_core::ErrorKind::InvalidInput);
        assert!(parse_uri("rel", Some(""), "").is_err());
    }

    // Expected values printed by `rxon.blob.calculate_config_hash`.
    #[test]
    fn config_hash_matches_the_reference() {
        assert_eq!(
            calculate_config_hash(
                Some("https://s3.example.com"),
                Some("minioadmin"),
                Some("rxon-data")
            )
            .as_deref(),
            Some("a982793c0cda824d")
        );
        assert_eq!(calculate_config_hash(Some(""), Some("a"), Some("b")), None);
        assert_eq!(calculate_config_hash(Some("e"), Some("a"), None), None);
    }

    #[test]
    fn config_hash_mismatch_is_its_own_error() {
        assert!(check_config_hash(Some("a"), Some("a")).is_ok());
        assert!(check_config_hash(Some("a"), None).is_ok());
        assert!(check_config_hash(None, Some("b")).is_ok());
        let e = check_config_hash(Some("a"), Some("b")).unwrap_err();
        assert_eq!(e.kind(), rxon_core::ErrorKind::S3ConfigMismatch);
        assert!(e.is_protocol());
    }

    #[test]
    fn strict_parse_rejects_escapes_and_junk() {
        for bad in [
            "s3://bucket/../etc/passwd",
            "s3://bucket/a/../../b",
            "s3://bucket/a/./b",
            "s3://bucket/a//b",
            "s3://bucket/a\\..\\b",
            "s3://bucket/a\nb",
            "s3://bucket/key?versionId=1",
            "s3:///key",
            "s3://b/key",
            "s3://-bucket/key",
            "s3://bucket",
        ] {
            let e = BlobUri::parse(bad, None, "").unwrap_err();
            assert_eq!(e.kind(), rxon_core::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(BlobUri::parse("../up", Some("bucket"), "jobs/").is_err());
        let long = format!("s3://bucket/{}", "k".repeat(MAX_KEY_LEN + 1));
        assert!(BlobUri::parse(&long, None, "").is_err());
    }

    #[test]
    fn strict_parse_keeps_the_reference_split() {
        let u = BlobUri::parse("s3://bucket/in/a.bin", None, "").unwrap();
        assert_eq!(
            (u.bucket(), u.key(), u.is_dir()),
            ("bucket", "in/a.bin", false)
        );
        assert_eq!(u.to_string(), "s3://bucket/in/a.bin");
        let d = BlobUri::parse("out/", Some("bucket"), "jobs/j1/").unwrap();
        assert_eq!((d.key(), d.is_dir()), ("jobs/j1/out", true));
        assert_eq!(d.to_string(), "s3://bucket/jobs/j1/out/");
        assert_eq!(
            d.join("x/y.txt").unwrap().to_string(),
            "s3://bucket/jobs/j1/out/x/y.txt"
        );
        assert!(d.join("../y").is_err());
        assert!(d.join("/y").is_err());
        let root = BlobUri::parse("s3://bucket/", None, "").unwrap();
        assert_eq!((root.key(), root.is_dir()), ("", true));
        assert_eq!(root.join("a").unwrap().to_string(), "s3://bucket/a");
    }
}

#[cfg(test)]
mod props {
    //! Property tests: whatever a peer puts in a reference, parsing never panics, and
    //! what the strict form accepts cannot leave its bucket's prefix or a directory.
    use super::*;
    use proptest::prelude::*;

    fn reference() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "s3://[a-z0-9._-]{0,70}(/[a-zA-Z0-9._\\\\ %?#-]{0,12}){0,6}/?",
            "(/|\\.\\./|\\./)?([a-zA-Z0-9._-]{0,8}/){0,5}[a-zA-Z0-9._-]{0,8}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn parse_uri_never_panics(uri in reference(), bucket in proptest::option::of("[a-z]{0,5}"), prefix in "[a-z/]{0,6}") {
            let _ = parse_uri(&uri, bucket.as_deref(), &prefix);
        }

        #[test]
        fn accepted_references_stay_inside(uri in reference(), rel in reference()) {
            if let Ok(u) = BlobUri::parse(&uri, Some("bucket"), "jobs/") {
                prop_assert!(!u.key().starts_with('/'));
                for seg in u.key().split('/').filter(|_| !u.key().is_empty()) {
                    prop_assert!(check_segment(seg).is_ok(), "{seg:?} in {uri:?}");
                }
                // The printed form parses back to the same reference.
                prop_assert_eq!(BlobUri::parse(&u.to_string(), None, "").ok(), Some(u.clone()));
                if let Ok(j) = u.join(&rel) {
                    let inside = if u.key().is_empty() {
                        true
                    } else {
                        j.key().starts_with(&format!("{}/", u.key()))
                    };
                    prop_assert!(inside, "{rel:?} escaped {u}");
                    prop_assert!(!j.key().split('/').any(|s| s == ".." || s == "." || s.is_empty()));
                }
            }
        }
    }
}
