//! The capability directory: what providers advertise on the network.
//!
//! Every node gossips a signed `CapabilityAd` for each capability it serves (its price model,
//! concurrency, input and output descriptions) and renews it before it lapses. Every node that
//! receives one keeps it here, one entry per (capability, provider), the newest ad winning.
//! An entry is listed until its ad's `expires_at_ms`: a provider that goes away drops out of
//! the directory one lifetime later. Bounded: at most [`MAX_ENTRIES`] entries; when full, the
//! entry closest to lapsing gives way (or the new ad, if it lapses sooner still).
//!
//! The engine feeds received ads in ([`Directory::observe`]); the node lists it
//! (`pvl capabilities`) and a requester whose round got no offer says what it knows
//! ([`Directory::summary`]).

use std::collections::BTreeMap;

use pvl_protocol::{Body, CapabilityAd, ObjectId, PriceModel, PublicKey, SignedObject};

/// Most (capability, provider) entries kept.
pub const MAX_ENTRIES: usize = 4096;

/// One provider's advertisement of one capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The capability.
    pub capability: String,
    /// Who serves it (the ad's signer).
    pub provider: PublicKey,
    /// The ad.
    pub ad: ObjectId,
    /// Its terms.
    pub terms: CapabilityAd,
    /// When the ad was signed, unix ms.
    pub signed_at_ms: u64,
    /// When this node last received it (or a renewal), unix ms.
    pub seen_at_ms: u64,
}

impl Listing {
    /// The price of a task of `input_size` bytes under the advertised model.
    pub fn price_for(&self, input_size: u64) -> u64 {
        match self.terms.price {
            PriceModel::Fixed(p) => p,
            PriceModel::PerKib { base, per_kib } => {
                base.saturating_add(per_kib.saturating_mul(input_size.div_ceil(1024)))
            }
        }
    }
}

/// The advertised capabilities this node has seen (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Directory {
    entries: BTreeMap<(String, PublicKey), Listing>,
}

impl Directory {
    /// Takes in a received capability ad (already verified). Returns whether it was kept: an
    /// ad that is not a capability ad, has lapsed, or is older than the one held is not.
    pub fn observe(&mut self, ad: &SignedObject, now_ms: u64) -> bool {
        let Body::CapabilityAd(terms) = ad.body() else {
            return false;
        };
        if terms.expires_at_ms <= now_ms {
            return false;
        }
        let key = (terms.capability.clone(), ad.signer());
        if let Some(held) = self.entries.get_mut(&key) {
            if held.signed_at_ms > ad.timestamp_ms() {
                return false;
            }
            held.ad = ad.id();
            held.terms = terms.clone();
            held.signed_at_ms = ad.timestamp_ms();
            held.seen_at_ms = now_ms;
            return true;
        }
        self.forget_lapsed(now_ms);
        if self.entries.len() >= MAX_ENTRIES {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, l)| l.terms.expires_at_ms)
                .map(|(k, l)| (k.clone(), l.terms.expires_at_ms));
            match soonest {
                Some((k, expires)) if expires < terms.expires_at_ms => {
                    self.entries.remove(&k);
                }
                _ => return false,
            }
        }
        self.entries.insert(
            key,
            Listing {
                capability: terms.capability.clone(),
                provider: ad.signer(),
                ad: ad.id(),
                terms: terms.clone(),
                signed_at_ms: ad.timestamp_ms(),
                seen_at_ms: now_ms,
            },
        );
        true
    }

    fn forget_lapsed(&mut self, now_ms: u64) {
        self.entries.retain(|_, l| l.terms.expires_at_ms > now_ms);
    }

    /// Every listing that has not lapsed, by capability then provider.
    pub fn list(&self, now_ms: u64) -> Vec<&Listing> {
        self.entries
            .values()
            .filter(|l| l.terms.expires_at_ms > now_ms)
            .collect()
    }

    /// The listings of one capability that have not lapsed.
    pub fn providers_of(&self, capability: &str, now_ms: u64) -> Vec<&Listing> {
        self.list(now_ms)
            .into_iter()
            .filter(|l| l.capability == capability)
            .collect()
    }

    /// What the directory knows about `capability`, in words, for a round that got no
    /// offer: how many providers advertise it and the cheapest price for `input_size` bytes,
    /// against `budget`.
    pub fn summary(
        &self,
        capability: &str,
        input_size: u64,
        budget: Option<u64>,
        now_ms: u64,
    ) -> String {
        let listed = self.providers_of(capability, now_ms);
        let Some(cheapest) = listed.iter().map(|l| l.price_for(input_size)).min() else {
            return format!("no provider advertises `{capability}`");
        };
        let who = match listed.len() {
            1 => "1 provider advertises".to_owned(),
            n => format!("{n} providers advertise"),
        };
        match budget {
            Some(b) => format!("{who} `{capability}`, cheapest {cheapest}; the budget is {b}"),
            None => format!("{who} `{capability}`, cheapest {cheapest}"),
        }
    }
}

/// Signs the ad of one served capability, lapsing `ttl_ms` after `now_ms`.
#[allow(clippy::too_many_arguments)]
pub fn advertise(
    key: &pvl_protocol::Keypair,
    capability: &str,
    price: PriceModel,
    max_concurrent: u32,
    input_desc: &str,
    output_desc: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> crate::Result<SignedObject> {
    crate::util::sign(
        key,
        None,
        &[],
        now_ms,
        Body::CapabilityAd(CapabilityAd {
            capability: capability.to_owned(),
            version: "1".to_owned(),
            input_desc: input_desc.to_owned(),
            output_desc: output_desc.to_owned(),
            price,
            max_concurrent,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvl_protocol::Keypair;

    const T0: u64 = 1_800_000_000_000;

    fn ad(seed: u8, capability: &str, price: u64, at: u64, ttl: u64) -> SignedObject {
        advertise(
            &Keypair::from_seed([seed; 32]),
            capability,
            PriceModel::Fixed(price),
            2,
            "bytes",
            "bytes",
            ttl,
            at,
        )
        .unwrap()
    }

    #[test]
    fn ads_are_listed_until_they_lapse_and_renewals_replace_them() {
        let mut d = Directory::default();
        assert!(d.observe(&ad(1, "sha256", 10, T0, 1_000), T0));
        assert!(d.observe(&ad(2, "sha256", 12, T0, 5_000), T0));
        assert!(d.observe(&ad(2, "echo", 1, T0, 5_000), T0));
        assert_eq!(d.providers_of("sha256", T0).len(), 2);
        assert_eq!(
            d.summary("sha256", 5, Some(3), T0),
            "2 providers advertise `sha256`, cheapest 10; the budget is 3"
        );
        // Provider 1 renews at a new price; an older ad does not undo it.
        assert!(d.observe(&ad(1, "sha256", 11, T0 + 500, 1_000), T0 + 500));
        assert!(!d.observe(&ad(1, "sha256", 9, T0 + 100, 1_000), T0 + 600));
        assert_eq!(
            d.summary("sha256", 5, None, T0 + 600),
            "2 providers advertise `sha256`, cheapest 11"
        );
        // Provider 1 stops renewing: gone one lifetime later.
        assert_eq!(d.providers_of("sha256", T0 + 1_600).len(), 1);
        assert_eq!(
            d.summary("nothing", 0, None, T0),
            "no provider advertises `nothing`"
        );
        // A lapsed ad is not taken.
        assert!(!d.observe(&ad(3, "echo", 1, T0, 10), T0 + 20));
    }

    #[test]
    fn the_directory_is_bounded() {
        let mut d = Directory::default();
        let key = Keypair::from_seed([9; 32]);
        for i in 0..MAX_ENTRIES + 10 {
            let a = advertise(
                &key,
                &format!("c{i}"),
                PriceModel::Fixed(1),
                1,
                "",
                "",
                1_000 + i as u64,
                T0,
            )
            .unwrap();
            d.observe(&a, T0);
        }
        assert_eq!(d.list(T0).len(), MAX_ENTRIES);
        // The entries closest to lapsing gave way.
        assert!(d.providers_of("c0", T0).is_empty());
        assert_eq!(
            d.providers_of(&format!("c{}", MAX_ENTRIES + 9), T0).len(),
            1
        );
    }
}
