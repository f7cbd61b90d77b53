//! The request-response codec for direct messages.
//!
//! A request is one signed object's exact wire bytes, read to the end of the stream (at most
//! `MAX_OBJECT_SIZE`). It is not decoded here: the event loop decodes and verifies it, and the
//! bytes are never re-encoded. A response is an [`Ack`]: one status byte followed by a UTF-8
//! reason of at most 1 KiB.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use pvl_protocol::MAX_OBJECT_SIZE;

/// The protocol name of direct messages.
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/pvl/direct/1");

const MAX_ACK_LEN: usize = 1 + 1024;

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
    fn encode(&self) -> Vec<u8> {
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

    fn decode(bytes: &[u8]) -> io::Result<Ack> {
        match bytes.split_first() {
            Some((0, [])) => Ok(Ack::Accepted),
            Some((1, [])) => Ok(Ack::Duplicate),
            Some((2, reason)) => Ok(Ack::Refused(String::from_utf8_lossy(reason).into_owned())),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed acknowledgement",
            )),
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
    type Request = Vec<u8>;
    type Response = Ack;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, MAX_OBJECT_SIZE).await
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Ack>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ack::decode(&read_limited(io, MAX_ACK_LEN).await?)
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Vec<u8>,
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
