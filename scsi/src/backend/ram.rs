//! placeholder
/// placeholder
pub struct RamBackend;
