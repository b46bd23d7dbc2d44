//! placeholder
/// placeholder
pub struct FileBackend;
/// placeholder
pub struct FileBackendOptions;
