//! Tests for the local module.
