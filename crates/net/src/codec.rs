//! The request-response codec for direct messages.
//!
//! A request is one signed object's exact wire bytes, read to the end of the stream (at most
//! `MAX_OBJECT_SIZE`). It is not decoded here: the event loop decodes and verifies it, and the
//! bytes are never re-encoded. A response is an [`Ack`]: one status byte followed by a UTF-8
//! reason of at most [`MAX_ACK_REASON_LEN`] bytes (SPEC.md §14; golden vectors in
//! `protocol/tests/vectors/net/acks.json`).

use std::io;

use bytes::Bytes;
use futures::prelude::*;
use libp2p::StreamProtocol;
use pvl_protocol::MAX_OBJECT_SIZE;

/// The protocol name of direct messages.
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/pvl/direct/1");

/// The longest reason a refusal carries, in bytes of UTF-8. A longer reason is cut at the last
/// character boundary at or before this length.
pub const MAX_ACK_REASON_LEN: usize = 1024;

/// The longest acknowledgement: the status byte and the longest reason.
const MAX_ACK_LEN: usize = 1 + MAX_ACK_REASON_LEN;

/// An acknowledgement that is not one of the three forms of [`Ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed acknowledgement")]
pub struct MalformedAck;

/// The receiver's answer to a direct message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// The object was valid and handed to the node.
    Accepted,
    /// The object was valid but had been received before.
    Duplicate,
    /// The object was refused, with the reason.
    Refused(String),
}

impl Ack {
    /// The acknowledgement's bytes: `0x00` accepted, `0x01` duplicate, or `0x02` followed by the
    /// reason's UTF-8 bytes, cut to at most [`MAX_ACK_REASON_LEN`] bytes on a character
    /// boundary.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Ack::Accepted => vec![0],
            Ack::Duplicate => vec![1],
            Ack::Refused(reason) => {
                let mut out = vec![2];
                let mut end = reason.len().min(MAX_ACK_LEN - 1);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&reason.as_bytes()[..end]);
                out
            }
        }
    }

    /// Reads an acknowledgement: exactly `0x00` or `0x01`, or `0x02` and a reason (invalid
    /// UTF-8 in the reason is replaced by U+FFFD, not refused). Anything else, the empty
    /// string included, is malformed.
    pub fn decode(bytes: &[u8]) -> Result<Ack, MalformedAck> {
        match bytes.split_first() {
            Some((0, [])) => Ok(Ack::Accepted),
            Some((1, [])) => Ok(Ack::Duplicate),
            Some((2, reason)) => Ok(Ack::Refused(String::from_utf8_lossy(reason).into_owned())),
            _ => Err(MalformedAck),
        }
    }
}

/// Reads the whole stream, refusing more than `limit` bytes.
async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// Codec: requests are raw signed-object bytes, responses are [`Ack`]s.
#[derive(Debug, Clone, Default)]
pub struct DirectCodec;

impl libp2p::request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = Bytes;
    type Response = Ack;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, MAX_OBJECT_SIZE).await.map(Bytes::from)
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Ack>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ack::decode(&read_limited(io, MAX_ACK_LEN).await?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Ack,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res.encode()).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_round_trip_and_garbage_is_an_error() {
        for ack in [
            Ack::Accepted,
            Ack::Duplicate,
            Ack::Refused("bad signature".into()),
        ] {
            assert_eq!(Ack::decode(&ack.encode()).unwrap(), ack);
        }
        assert!(Ack::decode(&[]).is_err());
        assert!(Ack::decode(&[7]).is_err());
        assert!(Ack::decode(&[0, 1]).is_err());
        let long = Ack::Refused("é".repeat(2000));
        assert!(long.encode().len() <= MAX_ACK_LEN);
    }
}
