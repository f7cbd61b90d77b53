//! Direct-message sessions: many objects on one long-lived stream (`/pvl/direct/2`, SPEC.md
//! §14.6).
//!
//! `/pvl/direct/1` opens a stream per object: a yamux stream opening, a multistream-select
//! negotiation, the object, a close, the acknowledgement and its close, flushed separately:
//! measured on a requester under load, 57 `sendto` calls per contract-net round for the 15
//! objects it sends and receives (7.3 on sessions). A session negotiates once and then
//! carries framed objects one way and framed acknowledgements the other, each batch of frames
//! written with one flush.
//!
//! The design:
//! - **One outbound session per peer.** The event loop hands each object for `peer` to that
//!   peer's session task through a bounded queue ([`SESSION_QUEUE`]); the task opens the stream
//!   (libp2p-stream dials on demand), writes every object queued with one flush, and answers
//!   each caller when its acknowledgement comes back, out of the event loop. At most
//!   [`MAX_UNANSWERED`] objects wait for an acknowledgement; each is given up after the
//!   exchange timeout, and a write the peer does not take within it ends the session. A
//!   session idle for [`SESSION_IDLE`] closes.
//! - **A peer that does not speak `/pvl/direct/2`** (negotiation fails) gets its objects back
//!   to the event loop, which sends them with `/pvl/direct/1` and remembers the peer until its
//!   last connection closes.
//! - **Inbound sessions** come from [`SessionListener`], a behaviour of our own that hands every
//!   negotiated stream to the event loop as a swarm event (libp2p-stream's own inbound side
//!   keeps one stream waiting and drops the rest: in a 10-node bench its log showed 6 inbound
//!   sessions dropped when providers opened theirs together, and the offers on them came
//!   100–200 ms late, on a retry).
//!   They are run by one task, at most [`MAX_SESSIONS_PER_PEER`] per peer and
//!   [`MAX_INBOUND_SESSIONS`] in all; a further stream is dropped. Each session hands every
//!   object to the event loop (a bounded channel, so a slow loop stops the reading and yamux's
//!   flow control stops the sender) with a sender for its acknowledgement; the loop admits it
//!   exactly as a `/pvl/direct/1` request. A session reads no further while
//!   [`MAX_UNANSWERED`] of its objects wait for an answer. A malformed frame ends the session.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use asynchronous_codec::{Decoder, Encoder, FramedRead, FramedWrite};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{AsyncReadExt as _, SinkExt as _, StreamExt as _};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, OpenStreamError};
use pvl_protocol::MAX_OBJECT_SIZE;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument as _, debug, debug_span};

use crate::codec::{Ack, MAX_ACK_REASON_LEN, MalformedAck};
use crate::event_loop::NetError;

/// The protocol name of direct-message sessions.
pub const SESSION_PROTOCOL: StreamProtocol = StreamProtocol::new("/pvl/direct/2");

/// The most objects a session carries that still wait for their acknowledgement; a sender
/// sends no more until one is answered, a receiver reads no more.
pub const MAX_UNANSWERED: usize = 256;

/// The most objects waiting in the queue of one peer's outbound session; a further one fails
/// at once (`busy`).
pub const SESSION_QUEUE: usize = 1024;

/// How long an outbound session with nothing to send and nothing unanswered stays open.
pub const SESSION_IDLE: Duration = Duration::from_secs(10);

/// The most inbound sessions one peer may hold open at once.
pub const MAX_SESSIONS_PER_PEER: usize = 4;

/// The most inbound sessions open at once, from all peers.
pub const MAX_INBOUND_SESSIONS: usize = 1024;

/// The bytes of a message frame's header: the message id and the object's length.
const MESSAGE_HEADER: usize = 8;

/// The bytes of an acknowledgement frame's header: the message id and the ack's length.
const ACK_HEADER: usize = 6;

/// The longest acknowledgement: its status byte and the longest reason.
const MAX_ACK_LEN: usize = 1 + MAX_ACK_REASON_LEN;

/// One object on a session: `id (u32, big-endian) ‖ length (u32, big-endian) ‖ object bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFrame {
    /// The sender's number for it, echoed by its acknowledgement.
    pub id: u32,
    /// The object's exact wire bytes.
    pub object: Bytes,
}

/// One acknowledgement on a session: `id (u32) ‖ length (u16) ‖ ack bytes` (SPEC.md §14.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFrame {
    /// The id of the message it answers.
    pub id: u32,
    /// The answer, or [`MalformedAck`] when its bytes are not one of §14.2's forms (that one
    /// message's outcome is then unknown; the session goes on).
    pub ack: Result<Ack, MalformedAck>,
}

/// Reads and writes [`MessageFrame`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct MessageCodec;

/// Reads and writes [`AckFrame`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct AckCodec;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Encoder for MessageCodec {
    type Item<'a> = MessageFrame;
    type Error = io::Error;

    fn encode(&mut self, frame: MessageFrame, dst: &mut BytesMut) -> io::Result<()> {
        if frame.object.len() > MAX_OBJECT_SIZE {
            return Err(invalid(format!(
                "object of {} bytes, over the limit of {MAX_OBJECT_SIZE}",
                frame.object.len()
            )));
        }
        dst.reserve(MESSAGE_HEADER + frame.object.len());
        dst.put_u32(frame.id);
        dst.put_u32(frame.object.len() as u32);
        dst.put_slice(&frame.object);
        Ok(())
    }
}

impl Decoder for MessageCodec {
    type Item = MessageFrame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<MessageFrame>> {
        if src.len() < MESSAGE_HEADER {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if len > MAX_OBJECT_SIZE {
            return Err(invalid(format!(
                "a message of {len} bytes, over the limit of {MAX_OBJECT_SIZE}"
            )));
        }
        if src.len() < MESSAGE_HEADER + len {
            src.reserve(MESSAGE_HEADER + len - src.len());
            return Ok(None);
        }
        let id = src.get_u32();
        src.advance(4);
        let object = src.split_to(len).freeze();
        Ok(Some(MessageFrame { id, object }))
    }
}

impl Encoder for AckCodec {
    type Item<'a> = AckFrame;
    type Error = io::Error;

    fn encode(&mut self, frame: AckFrame, dst: &mut BytesMut) -> io::Result<()> {
        let ack = match &frame.ack {
            Ok(ack) => ack.encode(),
            Err(MalformedAck) => return Err(invalid("cannot send a malformed ack".into())),
        };
        dst.reserve(ACK_HEADER + ack.len());
        dst.put_u32(frame.id);
        // `Ack::encode` cuts the reason: at most `MAX_ACK_LEN` bytes, which fits a u16.
        dst.put_u16(ack.len() as u16);
        dst.put_slice(&ack);
        Ok(())
    }
}

impl Decoder for AckCodec {
    type Item = AckFrame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<AckFrame>> {
        if src.len() < ACK_HEADER {
            return Ok(None);
        }
        let len = u16::from_be_bytes([src[4], src[5]]) as usize;
        if len == 0 || len > MAX_ACK_LEN {
            return Err(invalid(format!(
                "an acknowledgement of {len} bytes (1 to {MAX_ACK_LEN})"
            )));
        }
        if src.len() < ACK_HEADER + len {
            return Ok(None);
        }
        let id = src.get_u32();
        src.advance(2);
        let bytes = src.split_to(len);
        Ok(Some(AckFrame {
            id,
            ack: Ack::decode(&bytes),
        }))
    }
}

/// An object on its way to a peer, and who waits for its acknowledgement.
pub(crate) struct Outgoing {
    pub(crate) object: Bytes,
    pub(crate) reply: oneshot::Sender<Result<Ack, NetError>>,
}

/// What session tasks tell the event loop.
pub(crate) enum SessionEvent {
    /// An object received on an inbound session, to admit like a `/pvl/direct/1` request and
    /// answer through `acks`.
    Inbound {
        peer: PeerId,
        id: u32,
        object: Bytes,
        acks: mpsc::Sender<(u32, Ack)>,
    },
    /// Objects an outbound session did not send: the peer does not speak
    /// [`SESSION_PROTOCOL`] (`legacy`, send them with `/pvl/direct/1`), or the session closed
    /// when idle just as they came (send them again).
    Returned {
        peer: PeerId,
        legacy: bool,
        sends: Vec<Outgoing>,
    },
}

/// The settings one outbound session runs with.
#[derive(Clone)]
pub(crate) struct SessionSettings {
    /// How long an object waits for its acknowledgement, and a stream for its opening.
    pub(crate) timeout: Duration,
    /// Where objects it gives back go.
    pub(crate) events: mpsc::Sender<SessionEvent>,
}

/// Starts `peer`'s outbound session; the event loop queues objects into the returned sender.
pub(crate) fn start_outbound(
    peer: PeerId,
    control: Control,
    settings: SessionSettings,
) -> mpsc::Sender<Outgoing> {
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    tokio::spawn(
        outbound(peer, control, rx, settings).instrument(debug_span!("session-out", %peer)),
    );
    tx
}

/// Answers every object still queued in `rx` with `error`.
fn fail_queued(rx: &mut mpsc::Receiver<Outgoing>, error: impl Fn() -> NetError) {
    rx.close();
    while let Ok(item) = rx.try_recv() {
        let _ = item.reply.send(Err(error()));
    }
}

/// Closes the queue and gives what it still holds back to the event loop (see
/// [`SessionEvent::Returned`]).
async fn give_back(
    peer: PeerId,
    rx: &mut mpsc::Receiver<Outgoing>,
    legacy: bool,
    events: &mpsc::Sender<SessionEvent>,
) {
    rx.close();
    let mut sends = Vec::new();
    while let Ok(item) = rx.try_recv() {
        sends.push(item);
    }
    if sends.is_empty() && !legacy {
        return;
    }
    let event = SessionEvent::Returned {
        peer,
        legacy,
        sends,
    };
    if let Err(mpsc::error::SendError(SessionEvent::Returned { sends, .. })) =
        events.send(event).await
    {
        for item in sends {
            let _ = item.reply.send(Err(NetError::Stopped));
        }
    }
}

/// One outbound session: opens the stream, writes what is queued, answers each caller.
async fn outbound(
    peer: PeerId,
    mut control: Control,
    mut rx: mpsc::Receiver<Outgoing>,
    settings: SessionSettings,
) {
    let unreachable = |reason: &str| NetError::Unreachable {
        attempts: 1,
        reason: reason.to_owned(),
    };
    let opened = tokio::time::timeout(
        settings.timeout,
        control.open_stream(peer, SESSION_PROTOCOL),
    )
    .await;
    let stream = match opened {
        Ok(Ok(stream)) => stream,
        Ok(Err(OpenStreamError::UnsupportedProtocol(_))) => {
            debug!(%peer, "peer does not speak {SESSION_PROTOCOL}: using /pvl/direct/1");
            give_back(peer, &mut rx, true, &settings.events).await;
            return;
        }
        Ok(Err(e)) => {
            let reason = e.to_string();
            debug!(%peer, "cannot open a session: {reason}");
            fail_queued(&mut rx, || unreachable(&reason));
            return;
        }
        Err(_) => {
            let reason = format!("no session opened within {:?}", settings.timeout);
            fail_queued(&mut rx, || unreachable(&reason));
            return;
        }
    };
    let (reader, writer) = stream.split();
    let mut acks = FramedRead::new(reader, AckCodec);
    let mut frames = FramedWrite::new(writer, MessageCodec);
    let mut waiting: HashMap<u32, oneshot::Sender<Result<Ack, NetError>>> = HashMap::new();
    // Every object waits the same time, so deadlines come in the order the ids were given.
    let mut deadlines: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut next_id: u32 = 0;
    // One timer a turn: the first message's deadline, or, with nothing unanswered, the end of
    // the idle time, counted from the last event.
    let mut last_event = Instant::now();
    let ended: Ended = loop {
        let idle_at = waiting.is_empty().then(|| last_event + SESSION_IDLE);
        let wake = match (deadlines.front().map(|(at, _)| *at), idle_at) {
            (Some(deadline), Some(idle)) => Some(deadline.min(idle)),
            (deadline, idle) => deadline.or(idle),
        };
        tokio::select! {
            frame = acks.next() => match frame {
                Some(Ok(AckFrame { id, ack })) => {
                    if let Some(reply) = waiting.remove(&id) {
                        let _ = reply.send(ack.map_err(|e| NetError::SendFailed(e.to_string())));
                    } else {
                        debug!(%peer, id, "acknowledgement for no message waiting (timed out)");
                    }
                    while deadlines.front().is_some_and(|(_, id)| !waiting.contains_key(id)) {
                        deadlines.pop_front();
                    }
                }
                Some(Err(e)) => break Ended::Broken(format!("the session failed: {e}")),
                None => break Ended::Broken("the peer closed the session".to_owned()),
            },
            item = rx.recv(), if waiting.len() < MAX_UNANSWERED => {
                let Some(first) = item else {
                    break Ended::Broken("the network event loop stopped".to_owned());
                };
                // Everything queued goes out with one flush; a peer that reads nothing (its
                // flow-control window full) holds the write up to the timeout, no longer.
                let written = tokio::time::timeout(settings.timeout, async {
                    let mut item = Some(first);
                    while let Some(Outgoing { object, reply }) = item.take() {
                        next_id = next_id.wrapping_add(1);
                        let id = next_id;
                        if let Err(e) = frames.feed(MessageFrame { id, object }).await {
                            let _ = reply.send(Err(NetError::SendFailed(e.to_string())));
                            return Err(e);
                        }
                        waiting.insert(id, reply);
                        deadlines.push_back((Instant::now() + settings.timeout, id));
                        if waiting.len() < MAX_UNANSWERED {
                            item = rx.try_recv().ok();
                        }
                    }
                    frames.flush().await
                })
                .await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Ended::Broken(format!("the session failed: {e}")),
                    Err(_) => {
                        break Ended::Stalled(format!(
                            "the peer read nothing for {:?}",
                            settings.timeout
                        ))
                    }
                }
            },
            _ = sleep_until_or_never(wake) => {
                let now = Instant::now();
                if idle_at.is_some_and(|at| at <= now) {
                    let _ = frames.close().await;
                    // Objects queued just now go back to the loop, for a new session.
                    give_back(peer, &mut rx, false, &settings.events).await;
                    debug!(%peer, "session idle: closed");
                    return;
                }
                while let Some((at, id)) = deadlines.front().copied() {
                    if at > now {
                        break;
                    }
                    deadlines.pop_front();
                    if let Some(reply) = waiting.remove(&id) {
                        let _ = reply.send(Err(NetError::SendFailed(format!(
                            "no acknowledgement within {:?}",
                            settings.timeout
                        ))));
                    }
                }
            },
        }
        last_event = Instant::now();
    };
    // The connection went or the stream broke: whatever was not acknowledged may or may not
    // have arrived, which a sender treats like a closed `/pvl/direct/1` connection (§14.5). A
    // stalled peer is like a `/pvl/direct/1` timeout: not tried again.
    let error = || match &ended {
        Ended::Broken(reason) => unreachable(reason),
        Ended::Stalled(reason) => NetError::SendFailed(reason.clone()),
    };
    debug!(%peer, "session ended: {}", ended.reason());
    for (_, reply) in waiting.drain() {
        let _ = reply.send(Err(error()));
    }
    fail_queued(&mut rx, error);
}

/// Why an outbound session ended, other than idle.
enum Ended {
    /// The stream or its connection broke, or the peer closed it.
    Broken(String),
    /// The peer took none of a write within the timeout.
    Stalled(String),
}

impl Ended {
    fn reason(&self) -> &str {
        match self {
            Ended::Broken(reason) | Ended::Stalled(reason) => reason,
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The most inbound sessions negotiated and waiting for their task to start.
pub(crate) const INBOUND_QUEUE: usize = 64;

/// Accepts inbound sessions until the event loop goes; each runs as its own task, bounded per
/// peer and in all.
pub(crate) async fn accept(
    mut incoming: mpsc::Receiver<(PeerId, Stream)>,
    events: mpsc::Sender<SessionEvent>,
) {
    let mut sessions: JoinSet<()> = JoinSet::new();
    // Whose each running session is, so that one that ended (or panicked) frees its place.
    let mut owners: HashMap<tokio::task::Id, PeerId> = HashMap::new();
    let mut per_peer: HashMap<PeerId, usize> = HashMap::new();
    loop {
        tokio::select! {
            next = incoming.recv() => {
                let Some((peer, stream)) = next else { break };
                let open = per_peer.get(&peer).copied().unwrap_or(0);
                if open >= MAX_SESSIONS_PER_PEER || sessions.len() >= MAX_INBOUND_SESSIONS {
                    debug!(%peer, open, "too many sessions: inbound session dropped");
                    continue;
                }
                *per_peer.entry(peer).or_insert(0) += 1;
                let session = inbound(peer, stream, events.clone())
                    .instrument(debug_span!("session-in", %peer));
                let task = sessions.spawn(session);
                owners.insert(task.id(), peer);
            }
            Some(done) = sessions.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                if let Some(peer) = owners.remove(&id)
                    && let Some(open) = per_peer.get_mut(&peer)
                {
                    *open -= 1;
                    if *open == 0 {
                        per_peer.remove(&peer);
                    }
                }
            }
        }
    }
}

/// One inbound session: objects to the event loop, acknowledgements back, in any order.
async fn inbound(peer: PeerId, stream: Stream, events: mpsc::Sender<SessionEvent>) {
    let (reader, writer) = stream.split();
    let mut frames = FramedRead::new(reader, MessageCodec);
    let mut acks_out = FramedWrite::new(writer, AckCodec);
    // Never more answers than unanswered objects, which `MAX_UNANSWERED` bounds.
    let (acks, mut answers) = mpsc::channel::<(u32, Ack)>(MAX_UNANSWERED);
    let mut unanswered = 0usize;
    let mut reading = true;
    loop {
        tokio::select! {
            frame = frames.next(), if reading && unanswered < MAX_UNANSWERED => match frame {
                Some(Ok(MessageFrame { id, object })) => {
                    unanswered += 1;
                    let event = SessionEvent::Inbound { peer, id, object, acks: acks.clone() };
                    if events.send(event).await.is_err() {
                        break;
                    }
                }
                Some(Err(e)) => {
                    debug!(%peer, "inbound session ended: {e}");
                    break;
                }
                None => reading = false,
            },
            Some((id, ack)) = answers.recv() => {
                let mut next = Some((id, ack));
                let mut failed = false;
                while let Some((id, ack)) = next.take() {
                    unanswered = unanswered.saturating_sub(1);
                    if acks_out.feed(AckFrame { id, ack: Ok(ack) }).await.is_err() {
                        failed = true;
                        break;
                    }
                    next = answers.try_recv().ok();
                }
                if failed || acks_out.flush().await.is_err() {
                    break;
                }
            },
        }
        if !reading && unanswered == 0 {
            let _ = acks_out.close().await;
            break;
        }
    }
}

/// Listens for `/pvl/direct/2` on every connection and hands each negotiated stream to the
/// swarm's owner as an event, none dropped: the connection's channel to the swarm applies
/// back-pressure instead. Outbound sessions are opened with libp2p-stream's [`Control`].
#[derive(Default)]
pub(crate) struct SessionListener {
    streams: VecDeque<(PeerId, Stream)>,
}

impl NetworkBehaviour for SessionListener {
    type ConnectionHandler = ListenHandler;
    type ToSwarm = (PeerId, Stream);

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(ListenHandler::default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(ListenHandler::default())
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        stream: THandlerOutEvent<Self>,
    ) {
        self.streams.push_back((peer, stream));
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.streams.pop_front() {
            Some(stream) => Poll::Ready(ToSwarm::GenerateEvent(stream)),
            None => Poll::Pending,
        }
    }
}

/// [`SessionListener`]'s handler: accepts `/pvl/direct/2` streams, opens none.
#[derive(Default)]
pub(crate) struct ListenHandler {
    streams: VecDeque<Stream>,
}

impl ConnectionHandler for ListenHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Stream;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(SESSION_PROTOCOL), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Infallible, Stream>> {
        match self.streams.pop_front() {
            Some(stream) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(stream)),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), Infallible>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            self.streams.push_back(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let frame = MessageFrame {
            id: 7,
            object: Bytes::from_static(b"\xa1\x01\x02"),
        };
        let mut wire = BytesMut::new();
        MessageCodec.encode(frame.clone(), &mut wire).unwrap();
        assert_eq!(&wire[..], b"\x00\x00\x00\x07\x00\x00\x00\x03\xa1\x01\x02");
        // Arriving a byte at a time, it decodes once, when complete.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            if let Some(f) = MessageCodec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![frame]);
        assert!(buf.is_empty());

        let ack = AckFrame {
            id: 9,
            ack: Ok(Ack::Refused("no".into())),
        };
        let mut wire = BytesMut::new();
        AckCodec.encode(ack.clone(), &mut wire).unwrap();
        assert_eq!(&wire[..], b"\x00\x00\x00\x09\x00\x03\x02no");
        assert_eq!(AckCodec.decode(&mut wire).unwrap(), Some(ack));
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut huge = BytesMut::from(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(MessageCodec.decode(&mut huge).is_err());
        let mut empty_ack = BytesMut::from(&[0, 0, 0, 1, 0, 0][..]);
        assert!(AckCodec.decode(&mut empty_ack).is_err());
        let mut long_ack = BytesMut::from(&[0, 0, 0, 1, 0x04, 0x02][..]);
        assert!(AckCodec.decode(&mut long_ack).is_err());
        // A well-framed ack whose bytes are no ack is that one message's malformed answer.
        let mut bad = BytesMut::from(&[0, 0, 0, 1, 0, 1, 7][..]);
        assert_eq!(
            AckCodec.decode(&mut bad).unwrap(),
            Some(AckFrame {
                id: 1,
                ack: Err(MalformedAck)
            })
        );
    }
}
