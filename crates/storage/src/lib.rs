//! Object storage for uploaded course material: local directory or S3.
