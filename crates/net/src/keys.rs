//! Conversions between libp2p identities and protocol keys: a node's libp2p ed25519 identity
//! key is its protocol signing key, and a peer id names the same key.

use libp2p::PeerId;
use libp2p::identity::{self, Keypair};

use crate::event_loop::NetError;

/// The protocol signing key of a libp2p ed25519 identity.
pub fn protocol_keypair(keypair: &Keypair) -> Result<pvl_protocol::Keypair, NetError> {
    let ed = keypair
        .clone()
        .try_into_ed25519()
        .map_err(|_| NetError::Config("the node identity must be an ed25519 key".into()))?;
    let secret = ed.secret();
    let seed: [u8; 32] = secret
        .as_ref()
        .try_into()
        .map_err(|_| NetError::Config("ed25519 secret is not 32 bytes".into()))?;
    Ok(pvl_protocol::Keypair::from_seed(seed))
}

/// The peer id of a protocol public key.
pub fn peer_id_of(key: &pvl_protocol::PublicKey) -> Result<PeerId, NetError> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .map_err(|e| NetError::Config(format!("not an ed25519 public key: {e}")))?;
    Ok(identity::PublicKey::from(ed).to_peer_id())
}

/// The protocol public key inside an ed25519 peer id (which embeds the key), if it is one.
pub fn public_key_of(peer: &PeerId) -> Option<pvl_protocol::PublicKey> {
    let multihash = peer.as_ref();
    // Peer ids of small keys use the identity multihash (code 0): the digest is the protobuf
    // encoding of the public key itself.
    if multihash.code() != 0 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(pvl_protocol::PublicKey(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_peer_ids_correspond() {
        let keypair = Keypair::generate_ed25519();
        let protocol = protocol_keypair(&keypair).unwrap();
        let peer = keypair.public().to_peer_id();
        assert_eq!(peer_id_of(&protocol.public()).unwrap(), peer);
        assert_eq!(public_key_of(&peer), Some(protocol.public()));
    }
}
