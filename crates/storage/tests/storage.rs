//! Object store contract tests.
