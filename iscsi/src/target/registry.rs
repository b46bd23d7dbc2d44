//! The session table: TSIH allocation, reinstatement, the session limit, and messages to
//! other connections (resets, shutdown).

use std::collections::HashMap;
use std::sync::Mutex;

use iscsi_proto::pdu::{LoginStatus, Lun};
use tokio::sync::mpsc;

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
    node: Option<usize>,
}

/// Key of a normal session: initiator name, ISID, target name.
type Key = (String, [u8; 6], String);

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<Key, Entry>,
    /// Connections in full feature phase, discovery ones included.
    conns: HashMap<u64, (Option<usize>, mpsc::UnboundedSender<Ctl>)>,
    next_tsih: u16,
}

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
    /// session (RFC 7143 §6.3.5). Returns the TSIH.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        &self,
        key: Option<(String, [u8; 6], String)>,
        tsih: u16,
        node: Option<usize>,
        conn: u64,
        ctl: mpsc::UnboundedSender<Ctl>,
        max: usize,
    ) -> Result<u16, LoginStatus> {
        let mut g = self.lock();
        let Some(key) = key else {
            // Discovery session: counted, never reinstated.
            if g.conns.len() >= max {
                return Err(LoginStatus::OUT_OF_RESOURCES);
            }
            let t = alloc_tsih(&mut g);
            g.conns.insert(conn, (node, ctl));
            return Ok(t);
        };
        let existing = g.sessions.get(&key).map(|e| (e.tsih, e.conn));
        let tsih = match (tsih, existing) {
            // New session; an existing one with this ISID is reinstated (replaced).
            (0, Some((_, old))) => {
                close_conn(&mut g, old);
                alloc_tsih(&mut g)
            }
            (0, None) => {
                if g.conns.len() >= max {
                    return Err(LoginStatus::OUT_OF_RESOURCES);
                }
                alloc_tsih(&mut g)
            }
            // Connection reinstatement in an existing session (one connection per session).
            (t, Some((cur, old))) if t == cur => {
                close_conn(&mut g, old);
                t
            }
            _ => return Err(LoginStatus::SESSION_DOES_NOT_EXIST),
        };
        g.sessions.insert(key, Entry { tsih, conn, node });
        g.conns.insert(conn, (node, ctl));
        Ok(tsih)
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
        for (id, (n, tx)) in &g.conns {
            if *id != except && *n == Some(node) {
                let _ = tx.send(msg.clone());
            }
        }
    }

    /// Sessions in the table (normal ones).
    #[allow(dead_code)]
    pub(crate) fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Session entries of a node (for tests and logs).
    #[allow(dead_code)]
    pub(crate) fn node_sessions(&self, node: usize) -> usize {
        self.lock()
            .sessions
            .values()
            .filter(|e| e.node == Some(node))
            .count()
    }
}

fn close_conn(g: &mut Inner, conn: u64) {
    if let Some((_, tx)) = g.conns.remove(&conn) {
        let _ = tx.send(Ctl::Reinstated);
    }
}

fn alloc_tsih(g: &mut Inner) -> u16 {
    loop {
        g.next_tsih = g.next_tsih.wrapping_add(1);
        let t = g.next_tsih;
        if t != 0 && !g.sessions.values().any(|e| e.tsih == t) {
            return t;
        }
    }
}
