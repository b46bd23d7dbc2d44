//! INQUIRY and REPORT LUNS (placeholder, being written).

/// REPORT LUNS parameter data (placeholder).
pub fn report_luns() {}
