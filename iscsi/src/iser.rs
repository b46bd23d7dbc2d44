//! iSCSI over iSER (RFC 7145): the engine's [`Target`](crate::target::Target) and
//! [`Session`](crate::initiator::Session) over the [`iscsi_iser`] datamover.
//!
//! Nothing above the datamover changes: the same login, sessions and SCSI run over RDMA
//! Sends, Writes and Reads. This module has the glue for the in-process loopback fabric
//! ([`iscsi_iser::loopback`]): [`LoopbackIser`] connects an initiator, [`LoopbackIserAcceptor`]
//! feeds a target.
//!
//! ```
//! use iscsi::initiator::{InitiatorConfig, Session};
//! use iscsi::iser::{LoopbackIser, LoopbackIserAcceptor};
//! use iscsi::iser_transport::loopback::{Fabric, LoopbackConfig};
//! use iscsi::scsi::backend::RamBackend;
//! use iscsi::scsi::lu::{LogicalUnit, LuConfig};
//! use iscsi::target::{Target, TargetConfig, TargetNode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fabric = Fabric::new(LoopbackConfig::default());
//! let lu = LogicalUnit::new(LuConfig::new("disk0"), RamBackend::new(1 << 20))?;
//! let node = TargetNode::new("iqn.2026-11.rs.iscsi:disk").lun(0, lu);
//! let mut target =
//!     Target::bind(TargetConfig::default(), &["127.0.0.1:0".parse()?], vec![node]).await?;
//! target.add_acceptor(LoopbackIserAcceptor::listen(&fabric, "rdma0:3260", Default::default())?);
//! let stop = target.shutdown_handle();
//! let running = tokio::spawn(target.run());
//!
//! let mut cfg = InitiatorConfig::new("rdma0:3260", "iqn.2026-11.rs.iscsi:disk");
//! cfg.lun = 0;
//! let s = Session::connect_with(cfg, LoopbackIser::new(fabric.clone())).await?;
//! s.write(0, &[7u8; 4096]).await?;
//! assert_eq!(s.read(0, 8).await?, vec![7u8; 4096]);
//! s.logout().await?;
//! stop.shutdown();
//! running.await??;
//! # Ok(())
//! # }
//! ```

use std::io;

use iscsi_iser::header::CmPrivateData;
use iscsi_iser::loopback::{Endpoint, Fabric, Faults, Listener, LoopbackError};
use iscsi_iser::mover::{IserConfig, IserDatamover, IserError};
use iscsi_proto::text::Role;

use crate::initiator::Transport;
use crate::target::{Accepted, Acceptor};

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// An initiator transport: iSER over a loopback [`Fabric`] (portals are fabric names).
#[derive(Clone, Debug)]
pub struct LoopbackIser {
    fabric: Fabric,
    config: IserConfig,
    faults: Option<Faults>,
}

impl LoopbackIser {
    /// Connects over `fabric` with the default [`IserConfig`].
    pub fn new(fabric: Fabric) -> Self {
        Self::with_config(fabric, IserConfig::default())
    }

    /// Connects over `fabric` with these queue sizes.
    pub fn with_config(fabric: Fabric, config: IserConfig) -> Self {
        Self {
            fabric,
            config,
            faults: None,
        }
    }

    /// Every connection made shares `faults` (to test recovery: a one-shot fault hits the
    /// first connection that gets there).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }
}

impl Transport for LoopbackIser {
    type Mover = IserDatamover<Endpoint>;

    async fn connect(&self, portal: &str) -> io::Result<Self::Mover> {
        // Our CM header says what Linux ib_iser says with plain memory registrations: no
        // zero-based addresses, no Send with Invalidate. The target's answer changes
        // nothing for us (we never invalidate remotely).
        let faults = self.faults.clone().unwrap_or_default();
        let (ep, _reply) = self
            .fabric
            .connect_with(portal, &CmPrivateData::OURS.to_bytes(), faults)
            .await
            .map_err(|e| match e {
                LoopbackError::Refused(_) => {
                    io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string())
                }
                other => io_err(other),
            })?;
        IserDatamover::new(ep, Role::Initiator, self.config.clone()).map_err(io_err)
    }
}

/// A target acceptor: iSER connections arriving on a loopback [`Fabric`] name.
#[derive(Debug)]
pub struct LoopbackIserAcceptor {
    listener: Listener,
    config: IserConfig,
}

impl LoopbackIserAcceptor {
    /// Listens on `name` of `fabric`.
    pub fn listen(fabric: &Fabric, name: &str, config: IserConfig) -> io::Result<Self> {
        let listener = fabric.listen(name).map_err(|e| match e {
            LoopbackError::AddrInUse(_) => io::Error::new(io::ErrorKind::AddrInUse, e.to_string()),
            other => io_err(other),
        })?;
        Ok(Self { listener, config })
    }
}

impl Acceptor for LoopbackIserAcceptor {
    type Mover = IserDatamover<Endpoint>;

    async fn accept(&mut self) -> Option<io::Result<Accepted<Self::Mover>>> {
        let req = self.listener.accept().await?;
        let peer = format!("iser:{}", self.listener.name());
        let config = self.config.clone();
        // The receives are posted (by the datamover) before the initiator sees the
        // connection, so its first login request has one.
        let mover = req.accept_with(&CmPrivateData::OURS.to_bytes(), |ep| {
            IserDatamover::new(ep, Role::Target, config)
        });
        Some(
            mover
                .map(|mover| Accepted {
                    mover,
                    peer,
                    local: None,
                })
                .map_err(|e: IserError| io_err(e)),
        )
    }
}
