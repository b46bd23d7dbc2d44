//! Initiator reads whose large Data-In go straight from the socket into the task buffer: the
//! data lands right whatever the split of the stream, with and without digests; a data digest
//! error is reported (not placed silently); a task cancelled while its data arrives gives its
//! buffer back and the stream stays in step.

use bytes::{Bytes, BytesMut};
use iscsi_proto::datamover::{Datamover, Notify, SendCommand};
use iscsi_proto::pdu::{DataIn, Digests, Pdu, PduError, ScsiCommand, ScsiResponse, ScsiStatus};
use iscsi_proto::serial::{DataSn, Itt, StatSn};
use iscsi_proto::text::{Digest, NegotiatedParams, Role};
use iscsi_tcp::TcpDatamover;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const LEN: usize = 200_000;

async fn pair(digests: Digests) -> (TcpDatamover, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
    let mut dm = TcpDatamover::new(c.unwrap(), Role::Initiator).unwrap();
    let params = NegotiatedParams {
        header_digest: if digests.header {
            Digest::Crc32c
        } else {
            Digest::None
        },
        data_digest: if digests.data {
            Digest::Crc32c
        } else {
            Digest::None
        },
        initiator_max_recv_data_segment_length: 1 << 20,
        ..NegotiatedParams::default()
    };
    dm.notice_key_values(&params);
    (dm, s.unwrap().0)
}

fn read_cmd(itt: u32) -> SendCommand {
    let mut c = ScsiCommand::with_cdb(&[0x28, 0, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
    c.read = true;
    c.itt = Itt(itt);
    c.expected_data_len = LEN as u32;
    SendCommand {
        command: c,
        immediate_len: 0,
        unsolicited_len: 0,
    }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..LEN)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Two Data-In PDUs (the second with status) carrying `data`.
fn data_ins(itt: u32, data: &[u8], digests: Digests) -> BytesMut {
    let mut w = BytesMut::new();
    let half = data.len() / 2 + 1;
    for (sn, (off, chunk)) in [(0, &data[..half]), (half, &data[half..])]
        .into_iter()
        .enumerate()
    {
        let last = sn == 1;
        Pdu::DataIn(DataIn {
            final_: last,
            status: last.then_some(ScsiStatus::GOOD),
            itt: Itt(itt),
            stat_sn: StatSn(7),
            data_sn: DataSn(sn as u32),
            buffer_offset: off as u32,
            data: Bytes::copy_from_slice(chunk),
            ..DataIn::default()
        })
        .encode(&mut w, digests)
        .unwrap();
    }
    w
}

/// Writes `bytes` in pieces of `piece` bytes, flushing each.
async fn send_split(s: &mut TcpStream, bytes: &[u8], piece: usize) {
    for c in bytes.chunks(piece) {
        s.write_all(c).await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
}

/// The next notification other than a CmdSN window report.
async fn next(dm: &mut TcpDatamover) -> Notify<Vec<u8>> {
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), dm.recv())
            .await
            .expect("a notification in time")
            .expect("no transport error")
            .expect("the connection is open");
        if !matches!(n, Notify::Window { .. }) {
            return n;
        }
    }
}

#[tokio::test]
async fn data_lands_in_place_under_any_split() {
    for digests in [
        Digests::NONE,
        Digests {
            header: true,
            data: true,
        },
    ] {
        for piece in [LEN * 3, 65_536, 4_099, 47] {
            let (mut dm, mut peer) = pair(digests).await;
            dm.send_command(read_cmd(1), Some(vec![0u8; LEN])).unwrap();
            let data = pattern(piece as u8);
            let wire = data_ins(1, &data, digests);
            let writer = tokio::spawn(async move {
                send_split(&mut peer, &wire, piece).await;
                peer
            });
            match next(&mut dm).await {
                Notify::DataComplete { itt, buf } => {
                    assert_eq!(itt, Itt(1));
                    assert!(buf == data, "data misplaced (piece {piece}, {digests:?})");
                }
                other => panic!("{other:?}"),
            }
            assert!(
                matches!(next(&mut dm).await, Notify::Control(Pdu::ScsiResponse(r)) if r.status == ScsiStatus::GOOD)
            );
            drop(writer.await.unwrap());
        }
    }
}

#[tokio::test]
async fn a_data_digest_error_is_reported() {
    let digests = Digests {
        header: false,
        data: true,
    };
    let (mut dm, mut peer) = pair(digests).await;
    dm.send_command(read_cmd(1), Some(vec![0u8; LEN])).unwrap();
    let mut wire = data_ins(1, &pattern(1), digests);
    wire[48 + 1000] ^= 0x10;
    send_split(&mut peer, &wire, 65_536).await;
    match next(&mut dm).await {
        Notify::Malformed { error, .. } => {
            assert!(matches!(error, PduError::DataDigest { .. }), "{error:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_task_cancelled_while_its_data_arrives() {
    let (mut dm, mut peer) = pair(Digests::NONE).await;
    dm.send_command(read_cmd(1), Some(vec![0u8; LEN])).unwrap();
    dm.send_command(read_cmd(2), Some(vec![0u8; LEN])).unwrap();
    let first = data_ins(1, &pattern(1), Digests::NONE);
    let second = data_ins(2, &pattern(2), Digests::NONE);
    // Part of task 1's first Data-In, so that its placement starts.
    peer.write_all(&first[..30_000]).await.unwrap();
    let notified = tokio::time::timeout(std::time::Duration::from_millis(300), next(&mut dm)).await;
    assert!(notified.is_err(), "nothing to report yet");
    let back = dm.cancel_data(Itt(1)).expect("the buffer comes back");
    assert_eq!(back.len(), LEN);
    let mut rest = BytesMut::from(&first[30_000..]);
    rest.extend_from_slice(&second);
    let writer = tokio::spawn(async move {
        send_split(&mut peer, &rest, 8_192).await;
        peer
    });
    // Task 1's PDUs go up as Control (nobody holds its buffer now); task 2 lands intact.
    let mut got2 = None;
    for _ in 0..6 {
        match next(&mut dm).await {
            Notify::Control(Pdu::DataIn(d)) => assert_eq!(d.itt, Itt(1)),
            Notify::DataComplete { itt, buf } => {
                assert_eq!(itt, Itt(2));
                got2 = Some(buf);
            }
            Notify::Control(Pdu::ScsiResponse(ScsiResponse { itt: Itt(2), .. })) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(got2.expect("task 2's buffer") == pattern(2));
    drop(writer.await.unwrap());
}
