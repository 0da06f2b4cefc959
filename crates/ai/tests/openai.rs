//! Tests for the openai module.
