//! The I_T nexus: which initiator port talks to the logical unit through which target port.

use std::{
    fmt::{self, Write as _},
    sync::Arc,
};

/// SPC-4 protocol identifier for iSCSI (table 444).
pub const PROTOCOL_ID_ISCSI: u8 = 0x5;

/// One I_T nexus as a logical unit sees it (SAM-5 §4.7). Unit attentions, RESERVE(6)
/// reservations and persistent-reservation registrations are kept per nexus.
///
/// Two values are the same nexus when initiator port name and relative target port match; a
/// session that logs in again with the same initiator port name (for iSCSI: initiator name and
/// ISID) is the same nexus as before.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ItNexus {
    initiator_port: Arc<str>,
    target_port: u16,
    transport_id: Arc<[u8]>,
}

impl ItNexus {
    /// A nexus with an explicit initiator port name, relative target port identifier (1-based)
    /// and TransportID (SPC-4 §7.6.4, used by PERSISTENT RESERVE IN READ FULL STATUS).
    pub fn new(
        initiator_port: impl Into<Arc<str>>,
        relative_target_port: u16,
        transport_id: impl Into<Arc<[u8]>>,
    ) -> Self {
        Self {
            initiator_port: initiator_port.into(),
            target_port: relative_target_port,
            transport_id: transport_id.into(),
        }
    }

    /// The nexus of an iSCSI session: the initiator port name is `name,i,0x<ISID>` (RFC 7143
    /// §4.2.7.1) and the TransportID uses format 01b (SPC-4 §7.6.4.6).
    pub fn iscsi(initiator_name: &str, isid: [u8; 6], relative_target_port: u16) -> Self {
        let mut port = String::with_capacity(initiator_name.len() + 17);
        port.push_str(initiator_name);
        port.push_str(",i,0x");
        for b in isid {
            // Writing into a String cannot fail.
            let _ = write!(port, "{b:02x}");
        }
        Self::new(
            port.as_str(),
            relative_target_port,
            iscsi_transport_id(&port),
        )
    }

    /// The SCSI initiator port name.
    pub fn initiator_port(&self) -> &str {
        &self.initiator_port
    }

    /// The initiator part of the port name: everything before `,i,0x` (the iSCSI name), or the
    /// whole name for other transports.
    pub fn initiator_name(&self) -> &str {
        self.initiator_port
            .split(",i,0x")
            .next()
            .unwrap_or(&self.initiator_port)
    }

    /// The relative target port identifier.
    pub fn relative_target_port(&self) -> u16 {
        self.target_port
    }

    /// The TransportID of the initiator port.
    pub fn transport_id(&self) -> &[u8] {
        &self.transport_id
    }
}

impl fmt::Debug for ItNexus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ItNexus({} via port {})",
            self.initiator_port, self.target_port
        )
    }
}

/// An iSCSI TransportID in format 01b: `name,i,0x<ISID>` NUL-terminated and padded to a multiple
/// of four bytes (SPC-4 §7.6.4.6).
pub fn iscsi_transport_id(initiator_port: &str) -> Vec<u8> {
    let body = initiator_port.len() + 1;
    let padded = body.div_ceil(4) * 4;
    let mut v = Vec::with_capacity(4 + padded);
    v.push(0x40 | PROTOCOL_ID_ISCSI);
    v.push(0);
    v.extend_from_slice(&(padded as u16).to_be_bytes());
    v.extend_from_slice(initiator_port.as_bytes());
    v.resize(4 + padded, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iscsi_nexus_names() {
        let n = ItNexus::iscsi("iqn.2007-10.org.example:host", [0x23, 0xd0, 0, 0, 0, 1], 1);
        assert_eq!(
            n.initiator_port(),
            "iqn.2007-10.org.example:host,i,0x23d000000001"
        );
        assert_eq!(n.initiator_name(), "iqn.2007-10.org.example:host");
        let t = n.transport_id();
        assert_eq!(t[0], 0x45);
        let len = usize::from(u16::from_be_bytes([t[2], t[3]]));
        assert_eq!(len % 4, 0);
        assert_eq!(t.len(), 4 + len);
        assert!(t[4..].starts_with(n.initiator_port().as_bytes()));
        assert_eq!(t[4 + n.initiator_port().len()], 0);
    }
}
