//! One connection: login, then the full feature phase, driven by one task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use iscsi_proto::auth::TargetAuthConfig;
use iscsi_proto::datamover::{DataBuffer, Datamover, Notify};
use iscsi_proto::pdu::{LoginStatus, Lun, Pdu, ScsiStatus, TaskMgmtFunction, TmfResponse, Tsih};
use iscsi_proto::serial::{Itt, StatSn};
use iscsi_proto::target::{
    CloseReason, Event, LoginConfig, LoginHost, LoginIdentity, LoginStep, NewCommand, Reply,
    ScsiOutcome, SendTargetsQuery, TargetLogin, TargetRecord, TargetSession, TmfRequest,
    encode_send_targets,
};
use iscsi_proto::text::SessionType;
use scsi_core::backend::{BlockBackend, IoBuf};
use scsi_core::lu::{LogicalUnit, ResetKind};
use scsi_core::{Asc, ItNexus, Sense, SenseFormat};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::registry::Ctl;
use super::{Shared, stopped};

/// A datamover buffer seen as a SCSI task buffer.
struct TaskBuf<T>(T);

impl<T: DataBuffer> IoBuf for TaskBuf<T> {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self.0.as_mut_bytes()
    }
}

/// A CDB without an allocation for the common (≤ 16 bytes) case.
enum CdbBuf {
    Short([u8; 16]),
    Long(Vec<u8>),
}

impl CdbBuf {
    fn new(cmd: &NewCommand) -> Self {
        match &cmd.extended_cdb {
            None => CdbBuf::Short(cmd.cdb),
            Some(_) => CdbBuf::Long(cmd.cdb_bytes()),
        }
    }
    fn as_slice(&self) -> &[u8] {
        match self {
            CdbBuf::Short(c) => c,
            CdbBuf::Long(v) => v,
        }
    }
}

/// Where a command goes.
enum Dest<B> {
    Unit(Arc<LogicalUnit<B>>),
    ReportLuns(Arc<[u16]>),
    NoUnit,
}

/// A task waiting for its data-out.
struct Waiting<T> {
    lun: Lun,
    cdb: CdbBuf,
    buf: Option<T>,
}

/// Runs the SCSI part of one task.
async fn execute<B: BlockBackend, T: DataBuffer>(
    dest: Dest<B>,
    nexus: Arc<ItNexus>,
    itt: Itt,
    cdb: CdbBuf,
    buf: T,
) -> (Itt, ScsiOutcome, T) {
    let cdb = cdb.as_slice();
    match dest {
        Dest::Unit(lu) => {
            let c = lu.execute(&nexus, cdb, TaskBuf(buf)).await;
            let outcome = ScsiOutcome {
                status: ScsiStatus(c.status.0),
                sense: c.sense_bytes().map(Bytes::from),
                data_len: u32::try_from(c.data_len).unwrap_or(u32::MAX),
                transfer_len: c.transfer_len,
            };
            (itt, outcome, c.buf.0)
        }
        Dest::ReportLuns(luns) => {
            let mut buf = buf;
            let outcome = match scsi_core::lu::report_luns(cdb, &luns) {
                Ok(data) => {
                    let alloc = u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize;
                    data_in(&mut buf, &data, alloc)
                }
                Err(sense) => check_condition(sense),
            };
            (itt, outcome, buf)
        }
        Dest::NoUnit => {
            let mut buf = buf;
            let outcome = if cdb[0] == 0x12 {
                // INQUIRY to a LUN that does not exist: peripheral qualifier 011b, type 1Fh.
                let mut data = [0u8; 36];
                data[0] = 0x7f;
                data[2] = 0x06;
                data[3] = 0x02;
                data[4] = 31;
                let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
                data_in(&mut buf, &data, alloc)
            } else {
                check_condition(Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED))
            };
            (itt, outcome, buf)
        }
    }
}

/// GOOD with `data` cut to the allocation length and the buffer.
fn data_in<T: DataBuffer>(buf: &mut T, data: &[u8], alloc: usize) -> ScsiOutcome {
    let n = data.len().min(alloc);
    let out = buf.as_mut_bytes();
    let copied = n.min(out.len());
    out[..copied].copy_from_slice(&data[..copied]);
    ScsiOutcome {
        status: ScsiStatus::GOOD,
        sense: None,
        data_len: copied as u32,
        transfer_len: n as u64,
    }
}

fn check_condition(sense: Sense) -> ScsiOutcome {
    ScsiOutcome {
        status: ScsiStatus::CHECK_CONDITION,
        sense: Some(Bytes::from(sense.to_vec(SenseFormat::Fixed))),
        data_len: 0,
        transfer_len: 0,
    }
}

/// The login's questions, answered from the shared state.
struct Host<'a, B> {
    shared: &'a Shared<B>,
    conn: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
    done: watch::Receiver<bool>,
    node: Option<usize>,
    /// The connection this login reinstates: it must be gone before full feature phase.
    replaces: Option<watch::Receiver<bool>>,
}

impl<B: BlockBackend> LoginHost for Host<'_, B> {
    fn authorize(&mut self, who: &LoginIdentity) -> Result<Arc<TargetAuthConfig>, LoginStatus> {
        if who.session_type == SessionType::Discovery {
            return Ok(Arc::new(TargetAuthConfig::default()));
        }
        let Some(name) = who.target_name.as_deref() else {
            return Err(LoginStatus::MISSING_PARAMETER);
        };
        let Some(i) = self.shared.nodes.iter().position(|n| n.name == name) else {
            return Err(LoginStatus::NOT_FOUND);
        };
        let node = &self.shared.nodes[i];
        if let Some(acl) = &node.acl
            && !acl.contains(&who.initiator_name)
        {
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        self.node = Some(i);
        Ok(Arc::new(node.auth.clone()))
    }

    fn open_session(
        &mut self,
        who: &LoginIdentity,
        user: Option<&str>,
    ) -> Result<Tsih, LoginStatus> {
        if *self.shared.shutdown.borrow() {
            return Err(LoginStatus::SERVICE_UNAVAILABLE);
        }
        if let (Some(n), Some(user)) = (self.node, user)
            && !self.shared.nodes[n].chap_user_admits(user, &who.initiator_name)
        {
            info!(user, initiator = %who.initiator_name, "CHAP user not bound to this initiator");
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        let key = match (who.session_type, &who.target_name) {
            (SessionType::Normal, Some(t)) => {
                Some((who.initiator_name.clone(), who.isid.0, t.clone()))
            }
            _ => None,
        };
        let (tsih, replaces) = self.shared.registry.open(
            key,
            who.tsih.0,
            self.node,
            (self.conn, self.ctl.clone(), self.done.clone()),
            self.shared.cfg.max_sessions,
        )?;
        self.replaces = replaces;
        Ok(Tsih(tsih))
    }
}

/// Serves one accepted connection.
pub(crate) async fn serve<B: BlockBackend, D: Datamover>(
    shared: Arc<Shared<B>>,
    c: super::Accepted<D>,
    id: u64,
    login_permit: OwnedSemaphorePermit,
) {
    let super::Accepted {
        mover: dm,
        peer,
        local,
    } = c;
    let span = info_span!("conn", id, peer = %peer);
    async move {
        let (done_tx, done_rx) = watch::channel(false);
        let ip = super::peer_ip(&peer);
        run(shared.clone(), dm, id, ip, local, login_permit, done_rx).await;
        shared.registry.close(id);
        // A login reinstating this session waits for this: our tasks are over and the I_T
        // nexus loss is recorded before the new session runs.
        let _ = done_tx.send(true);
        debug!("connection closed");
    }
    .instrument(span)
    .await
}

/// Login then full feature phase over any datamover.
async fn run<B: BlockBackend, D: Datamover>(
    shared: Arc<Shared<B>>,
    mut dm: D,
    id: u64,
    ip: Option<std::net::IpAddr>,
    local: Option<SocketAddr>,
    login_permit: OwnedSemaphorePermit,
    done: watch::Receiver<bool>,
) {
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    let mut random = vec![0u8; 68];
    if !crate::fill_random(&mut random) {
        return error!("no random bytes from the operating system: connection refused");
    }
    let stat_sn = u32::from_be_bytes([random[64], random[65], random[66], random[67]]);
    let mut negotiation = shared.cfg.negotiation.clone();
    negotiation.target_portal_group_tag = Some(shared.cfg.portal_group_tag);
    if let Some(max) = dm.max_recv_data_segment_length() {
        negotiation.limit_recv_data_segment_length(max);
    }
    if dm.rdma_extensions() {
        // Over iSER the target RDMA-Reads write data from the initiator's buffer; unsolicited
        // Data-Out would only take receive buffers (one per PDU, for every write in the
        // window at once).
        negotiation.initial_r2t = true;
    }
    let mut login = TargetLogin::new(
        LoginConfig {
            negotiation,
            initial_stat_sn: StatSn(stat_sn),
            queue_depth: shared.cfg.session.queue_depth,
            random: random[..64].to_vec(),
        },
        dm.rdma_extensions(),
    );
    let deadline = Instant::now() + shared.cfg.login_timeout;
    let mut node = None;
    loop {
        let n = match timeout_at(deadline, dm.recv()).await {
            Err(_) => return info!("login timed out"),
            Ok(Err(e)) => return debug!(error = %e, "connection failed during login"),
            Ok(Ok(None)) => return debug!("peer closed during login"),
            Ok(Ok(Some(n))) => n,
        };
        let req = match n {
            Notify::Control(Pdu::LoginRequest(req)) => req,
            Notify::Control(pdu) => {
                return info!(opcode = ?pdu.opcode(), "non-login PDU before login completed");
            }
            _ => return info!("malformed PDU during login"),
        };
        let mut host = Host {
            shared: &shared,
            conn: id,
            ctl: ctl_tx.clone(),
            done: done.clone(),
            node,
            replaces: None,
        };
        let step = login.handle(&req, &mut host);
        node = host.node;
        if let Some(mut old) = host.replaces.take() {
            // Reinstatement (RFC 7143 §6.3.5): the old connection's tasks end first.
            let until = Instant::now() + shared.cfg.shutdown_grace;
            if timeout_at(until, old.wait_for(|d| *d)).await.is_err() {
                warn!("the reinstated connection did not end in time");
            }
        }
        match step {
            LoginStep::Continue(r) => {
                if dm.send_control(Pdu::LoginResponse(r)).is_err() {
                    return;
                }
            }
            LoginStep::Failed(r, e) => {
                info!(error = %e, "login refused");
                if r.status == LoginStatus::AUTHENTICATION_FAILURE {
                    shared.auth_result(ip, false);
                }
                if dm.send_control(Pdu::LoginResponse(r)).is_ok() {
                    let _ = timeout_at(Instant::now() + shared.cfg.login_timeout, dm.flush()).await;
                }
                return;
            }
            LoginStep::Complete(r) => {
                if dm.send_control(Pdu::LoginResponse(r)).is_err() {
                    return;
                }
                shared.auth_result(ip, true);
                break;
            }
        }
    }
    drop(login_permit);
    let Some(outcome) = login.finish() else {
        return;
    };
    dm.notice_key_values(&outcome.params);
    let who = &outcome.identity;
    info!(
        initiator = %who.initiator_name,
        target = who.target_name.as_deref().unwrap_or("-"),
        kind = ?who.session_type,
        tsih = outcome.tsih.0,
        header_digest = ?outcome.params.header_digest,
        data_digest = ?outcome.params.data_digest,
        "logged in"
    );
    let nexus = Arc::new(ItNexus::iscsi(&who.initiator_name, who.isid.0, 1));
    let session = TargetSession::new(
        shared.cfg.session.clone(),
        outcome.negotiator,
        outcome.exp_cmd_sn,
        outcome.stat_sn,
        StdInstant::now(),
    );
    let mut ffp = Ffp {
        shared: &shared,
        node,
        id,
        nexus,
        dm,
        session,
        waiting: HashMap::new(),
        local,
        reinstated: false,
        luns: node
            .map(|n| shared.nodes[n].lun_numbers().into())
            .unwrap_or_else(|| Arc::from(Vec::new())),
    };
    let span = info_span!(
        "session",
        tsih = outcome.tsih.0,
        initiator = %ffp.nexus.initiator_port()
    );
    ffp.run(&mut ctl_rx).instrument(span).await;
    if let Some(n) = node {
        for lu in shared.nodes[n].luns.values() {
            lu.nexus_lost(&ffp.nexus);
        }
    }
}

struct Ffp<'a, B: BlockBackend, D: Datamover> {
    shared: &'a Shared<B>,
    node: Option<usize>,
    id: u64,
    nexus: Arc<ItNexus>,
    dm: D,
    session: TargetSession,
    waiting: HashMap<Itt, Waiting<D::Buffer>>,
    /// Our address on this connection (stands in for a wildcard portal in SendTargets).
    local: Option<SocketAddr>,
    /// A new login took over this session: end without finishing running commands.
    reinstated: bool,
    luns: Arc<[u16]>,
}

impl<B: BlockBackend, D: Datamover> Ffp<'_, B, D> {
    fn dest(&self, lun: Lun, cdb: &[u8]) -> Dest<B> {
        if cdb.first() == Some(&0xA0) {
            return Dest::ReportLuns(self.luns.clone());
        }
        let unit = self
            .node
            .and_then(|n| lun.index().and_then(|i| self.shared.nodes[n].luns.get(&i)));
        match unit {
            Some(lu) => Dest::Unit(lu.clone()),
            None => Dest::NoUnit,
        }
    }

    async fn run(&mut self, ctl: &mut mpsc::UnboundedReceiver<Ctl>) {
        let mut running = FuturesUnordered::new();
        let mut stop = self.shared.shutdown.clone();
        let mut stopping: Option<Instant> = None;
        let far = Instant::now() + std::time::Duration::from_secs(86400 * 365);
        let mut timer_at = far;
        let mut timer = pin!(sleep_until(far));
        let mut closing = false;
        loop {
            // Events to actions.
            while let Some(ev) = self.session.poll_event() {
                match ev {
                    Event::Command(cmd) => {
                        let mut buf = match self.dm.alloc(cmd.edtl as usize) {
                            Ok(b) => b,
                            Err(e) => {
                                warn!(error = %e, itt = ?cmd.itt, "no task buffer; closing the connection");
                                closing = true;
                                continue;
                            }
                        };
                        let imm = &cmd.immediate_data;
                        if let Some(dst) = buf.as_mut_bytes().get_mut(..imm.len()) {
                            dst.copy_from_slice(imm);
                        }
                        let cdb = CdbBuf::new(&cmd);
                        if cmd.ready {
                            let dest = self.dest(cmd.lun, cdb.as_slice());
                            running.push(execute(dest, self.nexus.clone(), cmd.itt, cdb, buf));
                        } else {
                            self.waiting.insert(
                                cmd.itt,
                                Waiting {
                                    lun: cmd.lun,
                                    cdb,
                                    buf: Some(buf),
                                },
                            );
                        }
                    }
                    Event::Data { itt, offset, data } => {
                        if let Some(buf) = self.waiting.get_mut(&itt).and_then(|w| w.buf.as_mut()) {
                            let start = offset as usize;
                            if let Some(dst) = buf.as_mut_bytes().get_mut(start..start + data.len())
                            {
                                dst.copy_from_slice(&data);
                            }
                        }
                    }
                    Event::GetData(req) => {
                        let buf = self.waiting.get_mut(&req.itt).and_then(|w| w.buf.take());
                        if let Some(buf) = buf
                            && self.dm.get_data(req, buf).is_err()
                        {
                            closing = true;
                        }
                    }
                    Event::Execute { itt } => {
                        if let Some(mut w) = self.waiting.remove(&itt)
                            && let Some(buf) = w.buf.take()
                        {
                            let dest = self.dest(w.lun, w.cdb.as_slice());
                            running.push(execute(dest, self.nexus.clone(), itt, w.cdb, buf));
                        }
                    }
                    Event::Release { itt } => {
                        self.waiting.remove(&itt);
                        self.dm.cancel_data(itt);
                    }
                    Event::Send(pdu) => {
                        closing |= self.dm.send_control(pdu).is_err();
                    }
                    Event::TaskManagement(req) => self.task_management(req),
                    Event::SendTargets { itt, query } => {
                        let text = self.send_targets(&query);
                        self.session.send_targets_reply(itt, text);
                    }
                    Event::KeyValues(p) => self.dm.notice_key_values(&p),
                    Event::Close(reason) => {
                        if matches!(reason, CloseReason::Logout) {
                            debug!(?reason, "closing");
                        } else {
                            info!(?reason, "closing the connection");
                        }
                        closing = true;
                    }
                    _ => {}
                }
            }
            if closing && self.reinstated {
                // The new session must not see these commands finish after its own start.
                return;
            }
            if closing {
                // Commands already running finish (a write handed to the backend is not cut
                // off); their answers go out if the connection still takes them.
                let grace = Instant::now() + self.shared.cfg.shutdown_grace;
                while let Ok(Some((itt, outcome, buf))) = timeout_at(grace, running.next()).await {
                    self.finish(itt, outcome, buf);
                }
                let _ = timeout_at(grace, self.dm.flush()).await;
                return;
            }
            if let Some(t) = self.session.poll_timeout() {
                let t = Instant::from_std(t);
                if t < timer_at {
                    timer_at = t;
                    timer.as_mut().reset(t);
                }
            }
            let stop_at = stopping.unwrap_or(far);
            tokio::select! {
                biased;
                n = self.dm.recv() => match n {
                    Ok(Some(n)) => self.notify(n),
                    Ok(None) => {
                        debug!("peer closed the connection");
                        closing = true;
                    }
                    Err(e) => {
                        info!(error = %e, "connection failed");
                        closing = true;
                    }
                },
                Some(first) = running.next(), if !running.is_empty() => {
                    // Every command already finished answers now: one write for the batch.
                    let mut next = Some(first);
                    while let Some((itt, outcome, buf)) = next.take() {
                        closing |= !self.finish(itt, outcome, buf);
                        next = running.next().now_or_never().flatten();
                    }
                }
                Some(msg) = ctl.recv() => self.control(msg),
                _ = &mut timer => {
                    timer_at = far;
                    timer.as_mut().reset(far);
                    let now = StdInstant::now();
                    if self.dm.output_progress() {
                        self.session.peer_alive(now);
                    }
                    self.session.handle_timeout(now);
                }
                _ = stopped(&mut stop), if stopping.is_none() => {
                    self.session.request_logout(self.shared.cfg.shutdown_grace.as_secs() as u16);
                    stopping = Some(Instant::now() + self.shared.cfg.shutdown_grace);
                }
                _ = sleep_until(stop_at), if stopping.is_some() => {
                    info!("initiator did not log out in time: closing");
                    closing = true;
                }
            }
        }
    }

    /// A command finished: its answer goes to the datamover. False when the datamover failed.
    fn finish(&mut self, itt: Itt, outcome: ScsiOutcome, buf: D::Buffer) -> bool {
        match self.session.complete(itt, outcome) {
            Some(Reply::Response(pdu)) => self.dm.send_control(pdu).is_ok(),
            Some(Reply::Data(put)) => self.dm.put_data(put, buf).is_ok(),
            None => true,
        }
    }

    fn notify(&mut self, n: Notify<D::Buffer>) {
        let now = StdInstant::now();
        match n {
            Notify::Control(pdu) => self.session.handle_pdu(now, pdu),
            Notify::Malformed { header, error } => {
                debug!(%error, "malformed PDU");
                self.session.handle_malformed(now, &header, &error);
            }
            Notify::DataComplete { itt, buf } => {
                if let Some(w) = self.waiting.get_mut(&itt) {
                    w.buf = Some(buf);
                }
                self.session.data_complete(itt);
            }
            Notify::DataFailed { itt, buf, error } => {
                debug!(?itt, %error, "data-out failed");
                drop(buf);
                self.session.data_failed(itt, error);
            }
            _ => {}
        }
    }

    fn control(&mut self, msg: Ctl) {
        match msg {
            Ctl::Reinstated => {
                info!("session reinstated by a new login");
                self.reinstated = true;
                self.session.cold_reset();
            }
            Ctl::Abort { node, lun } => {
                if self.node == Some(node) {
                    self.session.abort_for_reset(lun);
                }
            }
            Ctl::ColdReset { node } => {
                if self.node == Some(node) {
                    self.session.cold_reset();
                }
            }
        }
    }

    fn task_management(&mut self, req: TmfRequest) {
        let Some(n) = self.node else {
            return self.session.tmf_done(req.itt, TmfResponse::NOT_SUPPORTED);
        };
        let node = &self.shared.nodes[n];
        let unit = req.lun.index().and_then(|i| node.luns.get(&i));
        let f = req.function;
        let response = match f {
            TaskMgmtFunction::ABORT_TASK => TmfResponse::COMPLETE,
            TaskMgmtFunction::ABORT_TASK_SET | TaskMgmtFunction::CLEAR_TASK_SET => match unit {
                None => TmfResponse::LUN_DOES_NOT_EXIST,
                Some(_) => {
                    if f == TaskMgmtFunction::CLEAR_TASK_SET {
                        let msg = Ctl::Abort {
                            node: n,
                            lun: Some(req.lun),
                        };
                        self.shared.registry.broadcast(n, self.id, msg);
                    }
                    TmfResponse::COMPLETE
                }
            },
            TaskMgmtFunction::LOGICAL_UNIT_RESET => match unit {
                None => TmfResponse::LUN_DOES_NOT_EXIST,
                Some(lu) => {
                    let msg = Ctl::Abort {
                        node: n,
                        lun: Some(req.lun),
                    };
                    self.shared.registry.broadcast(n, self.id, msg);
                    lu.reset(ResetKind::LogicalUnit);
                    TmfResponse::COMPLETE
                }
            },
            TaskMgmtFunction::TARGET_WARM_RESET | TaskMgmtFunction::TARGET_COLD_RESET
                if !self.shared.cfg.allow_target_reset =>
            {
                TmfResponse::AUTHORIZATION_FAILED
            }
            TaskMgmtFunction::TARGET_WARM_RESET => {
                let msg = Ctl::Abort { node: n, lun: None };
                self.shared.registry.broadcast(n, self.id, msg);
                for lu in node.luns.values() {
                    lu.reset(ResetKind::TargetWarm);
                }
                TmfResponse::COMPLETE
            }
            TaskMgmtFunction::TARGET_COLD_RESET => {
                self.shared
                    .registry
                    .broadcast(n, self.id, Ctl::ColdReset { node: n });
                for lu in node.luns.values() {
                    lu.reset(ResetKind::TargetCold);
                }
                self.session.tmf_done(req.itt, TmfResponse::COMPLETE);
                self.session.cold_reset();
                return;
            }
            _ => TmfResponse::NOT_SUPPORTED,
        };
        self.session.tmf_done(req.itt, response);
    }

    fn send_targets(&self, query: &SendTargetsQuery) -> Bytes {
        let initiator = self.nexus.initiator_name();
        let mut addresses: Vec<(String, u16)> = self
            .shared
            .portals
            .iter()
            .map(|p| {
                // A portal on a wildcard address is announced with the address the initiator
                // reached us on.
                let mut p = *p;
                if p.ip().is_unspecified()
                    && let Some(l) = self.local
                {
                    p.set_ip(l.ip());
                }
                (p.to_string(), self.shared.cfg.portal_group_tag)
            })
            .collect();
        // A target without TCP portals (iSER only) announces where this connection arrived.
        if addresses.is_empty()
            && let Some(l) = self.local
        {
            addresses.push((l.to_string(), self.shared.cfg.portal_group_tag));
        }
        let current = self.node.map(|n| self.shared.nodes[n].name.as_str());
        let records: Vec<TargetRecord> = self
            .shared
            .nodes
            .iter()
            .filter(|n| match query {
                SendTargetsQuery::All => true,
                SendTargetsQuery::Target(t) => n.name == *t,
                SendTargetsQuery::Current => Some(n.name.as_str()) == current,
            })
            .filter(|n| {
                n.acl
                    .as_ref()
                    .is_none_or(|acl| acl.iter().any(|a| a == initiator))
            })
            .map(|n| TargetRecord {
                name: n.name.clone(),
                addresses: addresses.clone(),
            })
            .collect();
        encode_send_targets(&records)
    }
}
