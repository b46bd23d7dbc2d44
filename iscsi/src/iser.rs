//! iSCSI over iSER (RFC 7145): the engine's [`Target`](crate::target::Target) and
//! [`Session`](crate::initiator::Session) over the [`iscsi_iser`] datamover.
//!
//! Nothing above the datamover changes: the same login, sessions and SCSI run over RDMA
//! Sends, Writes and Reads. This module has the glue for the in-process loopback fabric
//! ([`iscsi_iser::loopback`]): [`LoopbackIser`] connects an initiator, [`LoopbackIserAcceptor`]
//! feeds a target; and, with the cargo feature `rdma`, for real RDMA through RDMA-CM:
//! `RdmaIser` and `RdmaIserAcceptor` (portals are IP addresses of RDMA-capable interfaces,
//! port 3260 by default, as for TCP).
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

#[cfg(feature = "rdma")]
pub use self::rdma::{RdmaIser, RdmaIserAcceptor};

#[cfg(feature = "rdma")]
mod rdma {
    use std::io;
    use std::net::SocketAddr;

    use iscsi_iser::header::CmPrivateData;
    use iscsi_iser::mover::{IserConfig, IserDatamover, IserError};
    use iscsi_iser::rdma::{self, RdmaConfig, RdmaEndpoint, RdmaError, RdmaListener};
    use iscsi_proto::text::Role;

    use super::io_err;
    use crate::initiator::Transport;
    use crate::target::{Accepted, Acceptor};

    /// Queue sizes for both layers from the datamover's.
    fn rdma_config(config: &IserConfig) -> RdmaConfig {
        RdmaConfig {
            recv_depth: u32::try_from(config.recv_depth).unwrap_or(u32::MAX),
            send_depth: u32::try_from(config.send_depth).unwrap_or(u32::MAX),
            ..RdmaConfig::default()
        }
    }

    fn rdma_io(e: RdmaError) -> io::Error {
        match e {
            RdmaError::Rejected { .. } => {
                io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string())
            }
            other => io_err(other),
        }
    }

    /// An initiator transport: iSER over RDMA-CM (portals are `address:port`).
    #[derive(Clone, Debug, Default)]
    pub struct RdmaIser {
        config: IserConfig,
    }

    impl RdmaIser {
        /// With the default [`IserConfig`].
        pub fn new() -> Self {
            Self::default()
        }

        /// With these queue sizes.
        pub fn with_config(config: IserConfig) -> Self {
            Self { config }
        }
    }

    impl Transport for RdmaIser {
        type Mover = IserDatamover<RdmaEndpoint>;

        async fn connect(&self, portal: &str) -> io::Result<Self::Mover> {
            let addr = tokio::net::lookup_host(portal)
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{portal}: no address"))
                })?;
            // Our CM header says what Linux ib_iser says with plain memory registrations:
            // no zero-based addresses, no Send with Invalidate.
            let (ep, _reply) = rdma::connect(
                addr,
                &CmPrivateData::OURS.to_bytes(),
                &rdma_config(&self.config),
            )
            .await
            .map_err(rdma_io)?;
            IserDatamover::new(ep, Role::Initiator, self.config.clone()).map_err(io_err)
        }
    }

    /// A target acceptor: iSER connections arriving over RDMA-CM on one address.
    #[derive(Debug)]
    pub struct RdmaIserAcceptor {
        listener: RdmaListener,
        config: IserConfig,
    }

    impl RdmaIserAcceptor {
        /// Listens on `addr` (an address of an RDMA-capable interface).
        pub fn bind(addr: SocketAddr, config: IserConfig) -> io::Result<Self> {
            let listener = RdmaListener::bind(addr, rdma_config(&config)).map_err(rdma_io)?;
            Ok(Self { listener, config })
        }

        /// The address listened on.
        pub fn local_addr(&self) -> SocketAddr {
            self.listener.local_addr()
        }
    }

    impl Acceptor for RdmaIserAcceptor {
        type Mover = IserDatamover<RdmaEndpoint>;

        async fn accept(&mut self) -> Option<io::Result<Accepted<Self::Mover>>> {
            let req = match self.listener.accept().await {
                Ok(r) => r,
                Err(e) => return Some(Err(rdma_io(e))),
            };
            let peer = req
                .peer_addr()
                .map_or_else(|| "iser:?".to_string(), |a| format!("iser:{a}"));
            let local = req.local_addr().or(Some(self.listener.local_addr()));
            let config = self.config.clone();
            // The receives are posted (by the datamover) before the connection is accepted,
            // so the initiator's first Login Request has one.
            let mover = req.accept_with(&CmPrivateData::OURS.to_bytes(), |ep| {
                IserDatamover::new(ep, Role::Target, config)
            });
            Some(
                mover
                    .map(|mover| Accepted { mover, peer, local })
                    .map_err(|e: IserError| io_err(e)),
            )
        }
    }
}
