//! The command table (placeholder, being written).
