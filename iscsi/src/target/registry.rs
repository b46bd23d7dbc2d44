//! The session table: TSIH allocation, reinstatement, the session limit, and messages to
//! other connections (resets, shutdown).

use std::collections::HashMap;
use std::sync::Mutex;

use iscsi_proto::pdu::{LoginStatus, Lun};
use tokio::sync::{mpsc, watch};

/// A message to a connection task from elsewhere in the target.
#[derive(Clone, Debug)]
pub(crate) enum Ctl {
    /// A newer login reinstated this session or connection: close now.
    Reinstated,
    /// A reset elsewhere aborted the tasks of this LUN (`None`: all LUNs of the node).
    Abort { node: usize, lun: Option<Lun> },
    /// TARGET COLD RESET: close.
    ColdReset { node: usize },
}

#[derive(Debug)]
struct Entry {
    tsih: u16,
    conn: u64,
}

/// Key of a normal session: initiator name, ISID, target name.
type Key = (String, [u8; 6], String);

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<Key, Entry>,
    /// Connections in full feature phase, discovery ones included.
    conns: HashMap<u64, Conn>,
    next_tsih: u16,
}

/// A connection in full feature phase.
#[derive(Debug)]
struct Conn {
    node: Option<usize>,
    ctl: mpsc::UnboundedSender<Ctl>,
    /// Turns true when the connection's task has ended.
    done: watch::Receiver<bool>,
}

/// What a logging-in connection gives the registry: its id, its control channel, and the
/// flag its task raises when it ends.
pub(crate) type ConnHandle = (u64, mpsc::UnboundedSender<Ctl>, watch::Receiver<bool>);

/// Sessions and connections of a target.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection entering full feature phase, creating or reinstating its
    /// session (RFC 7143 §6.3.5). Returns the TSIH and, on reinstatement, the end flag of the
    /// connection being replaced (told to close): wait for it before full feature phase.
    pub(crate) fn open(
        &self,
        key: Option<(String, [u8; 6], String)>,
        tsih: u16,
        node: Option<usize>,
        conn: ConnHandle,
        max: usize,
    ) -> Result<(u16, Option<watch::Receiver<bool>>), LoginStatus> {
        let (id, ctl, done) = conn;
        let mut g = self.lock();
        let Some(key) = key else {
            // Discovery session: counted, never reinstated.
            if g.conns.len() >= max {
                return Err(LoginStatus::OUT_OF_RESOURCES);
            }
            let t = alloc_tsih(&mut g).ok_or(LoginStatus::OUT_OF_RESOURCES)?;
            g.conns.insert(id, Conn { node, ctl, done });
            return Ok((t, None));
        };
        let existing = g.sessions.get(&key).map(|e| (e.tsih, e.conn));
        let (tsih, old) = match (tsih, existing) {
            // New session; an existing one with this ISID is reinstated (replaced).
            (0, Some((_, old))) => {
                let t = alloc_tsih(&mut g).ok_or(LoginStatus::OUT_OF_RESOURCES)?;
                (t, close_conn(&mut g, old))
            }
            (0, None) => {
                if g.conns.len() >= max {
                    return Err(LoginStatus::OUT_OF_RESOURCES);
                }
                let t = alloc_tsih(&mut g).ok_or(LoginStatus::OUT_OF_RESOURCES)?;
                (t, None)
            }
            // Connection reinstatement in an existing session (one connection per session).
            (t, Some((cur, old))) if t == cur => (t, close_conn(&mut g, old)),
            _ => return Err(LoginStatus::SESSION_DOES_NOT_EXIST),
        };
        g.sessions.insert(key, Entry { tsih, conn: id });
        g.conns.insert(id, Conn { node, ctl, done });
        Ok((tsih, old))
    }

    /// Forgets a connection (and its session when it still owns it).
    pub(crate) fn close(&self, conn: u64) {
        let mut g = self.lock();
        g.conns.remove(&conn);
        g.sessions.retain(|_, e| e.conn != conn);
    }

    /// Sends `msg` to every connection of `node` except `except`.
    pub(crate) fn broadcast(&self, node: usize, except: u64, msg: Ctl) {
        let g = self.lock();
        for (id, c) in &g.conns {
            if *id != except && c.node == Some(node) {
                let _ = c.ctl.send(msg.clone());
            }
        }
    }
}

/// Tells a connection it was replaced; returns its end flag.
fn close_conn(g: &mut Inner, conn: u64) -> Option<watch::Receiver<bool>> {
    let c = g.conns.remove(&conn)?;
    let _ = c.ctl.send(Ctl::Reinstated);
    Some(c.done)
}

/// A TSIH no session uses, or `None` when all 65535 are taken.
fn alloc_tsih(g: &mut Inner) -> Option<u16> {
    for _ in 0..=u16::MAX {
        g.next_tsih = g.next_tsih.wrapping_add(1);
        let t = g.next_tsih;
        if t != 0 && !g.sessions.values().any(|e| e.tsih == t) {
            return Some(t);
        }
    }
    None
}
