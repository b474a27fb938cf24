//! The integration tests of `rxon-blob` (S3 blob storage), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod s3;
