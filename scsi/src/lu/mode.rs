//! MODE SENSE / MODE SELECT and the mode pages (placeholder, being written).
