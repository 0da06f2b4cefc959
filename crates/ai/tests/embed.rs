//! Tests for the embed module.
