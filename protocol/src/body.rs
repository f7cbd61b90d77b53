//! The coordination objects (envelope bodies) and their CBOR layout.
//!
//! Each body is a CBOR array with fixed positions; `SPEC.md` lists them. Decoding checks every
//! field's type and range, so a decoded body is always meaningful (a reliability never exceeds
//! 100 %, a committee threshold never exceeds its size, a quorum certificate always holds enough
//! valid approving votes).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use crate::cbor::{self, Result};
use crate::envelope::SignedObject;
use crate::error::ProtocolError;
use crate::ids::ObjectId;
use crate::keys::PublicKey;
use crate::{
    MAX_CAPABILITY_LEN, MAX_COMMITTEE, MAX_EVENT_ITEMS, MAX_INLINE_PAYLOAD, MAX_OBJECT_SIZE,
    MAX_TEXT_LEN,
};

/// The kind of an object; its number is the second field of every envelope. (Serde: its
/// snake_case name, for JSON views and the control API.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Kind {
    /// What is wanted (requester).
    Intent = 1,
    /// A provider's terms for an intent.
    Offer = 2,
    /// The award: the requester starts a task on the chosen offer.
    TaskStart = 3,
    /// A provider's progress report.
    TaskProgress = 4,
    /// A provider's final report with the output.
    TaskDone = 5,
    /// Signed evidence of execution (provider, countersigned by the requester).
    Receipt = 6,
    /// An immutable observation or decision.
    Event = 7,
    /// A provider announces a capability.
    CapabilityAd = 8,
    /// A consensus round is opened.
    Proposal = 9,
    /// A committee member's vote in a round.
    Vote = 10,
    /// A threshold of approving votes for a proposal.
    QuorumCert = 11,
    /// A losing bidder is told why it lost.
    Reject = 12,
}

impl Kind {
    /// Every kind, in code order.
    pub const ALL: [Kind; 12] = [
        Kind::Intent,
        Kind::Offer,
        Kind::TaskStart,
        Kind::TaskProgress,
        Kind::TaskDone,
        Kind::Receipt,
        Kind::Event,
        Kind::CapabilityAd,
        Kind::Proposal,
        Kind::Vote,
        Kind::QuorumCert,
        Kind::Reject,
    ];

    /// The wire code of the kind.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind with wire code `code`.
    pub fn from_code(code: u64) -> std::result::Result<Kind, ProtocolError> {
        Kind::ALL
            .into_iter()
            .find(|k| u64::from(k.code()) == code)
            .ok_or(ProtocolError::UnknownKind(code))
    }

    /// The lowercase name used in logs, JSON and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Intent => "intent",
            Kind::Offer => "offer",
            Kind::TaskStart => "task_start",
            Kind::TaskProgress => "task_progress",
            Kind::TaskDone => "task_done",
            Kind::Receipt => "receipt",
            Kind::Event => "event",
            Kind::CapabilityAd => "capability_ad",
            Kind::Proposal => "proposal",
            Kind::Vote => "vote",
            Kind::QuorumCert => "quorum_cert",
            Kind::Reject => "reject",
        }
    }

    /// Whether an object of this kind may start a trace (carry `null` as trace id).
    pub fn may_be_root(self) -> bool {
        matches!(self, Kind::Intent | Kind::CapabilityAd)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Task input or output: the bytes themselves, or their SHA-256 and size when they travel
/// out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The data itself (at most [`MAX_INLINE_PAYLOAD`] bytes).
    Inline(Vec<u8>),
    /// A content hash and the size of the data it names.
    Hash {
        /// SHA-256 of the data.
        sha256: [u8; 32],
        /// Size of the data in bytes.
        size: u64,
    },
}

impl Payload {
    /// SHA-256 of the data, whether inline or by reference.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            Payload::Inline(data) => crate::ids::sha256(data),
            Payload::Hash { sha256, .. } => *sha256,
        }
    }

    /// Size of the data in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Payload::Inline(data) => data.len() as u64,
            Payload::Hash { size, .. } => *size,
        }
    }

    /// The inline bytes, if the data travels inline.
    pub fn inline(&self) -> Option<&[u8]> {
        match self {
            Payload::Inline(data) => Some(data),
            Payload::Hash { .. } => None,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Payload::Inline(data) => Value::Array(vec![cbor::uint(0), cbor::bytes(data)]),
            Payload::Hash { sha256, size } => {
                Value::Array(vec![cbor::uint(1), cbor::bytes(sha256), cbor::uint(*size)])
            }
        }
    }

    fn from_value(value: Value, field: &'static str) -> Result<Self> {
        let (tag, items) = cbor::tagged(value, field, 3)?;
        match tag {
            0 => {
                let [data] = cbor::rest(items, field)?;
                Ok(Payload::Inline(cbor::as_bytes(
                    data,
                    field,
                    MAX_INLINE_PAYLOAD,
                )?))
            }
            1 => {
                let [hash, size] = cbor::rest(items, field)?;
                Ok(Payload::Hash {
                    sha256: cbor::as_bytes32(hash, field)?,
                    size: cbor::as_u64(size, field)?,
                })
            }
            other => Err(ProtocolError::field(
                field,
                format!("unknown payload tag {other}"),
            )),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Payload::Inline(data) => match std::str::from_utf8(data) {
                Ok(text) => map.serialize_entry("inline_text", text)?,
                Err(_) => map.serialize_entry("inline_hex", &hex::encode(data))?,
            },
            Payload::Hash { sha256, size } => {
                map.serialize_entry("sha256", &hex::encode(sha256))?;
                map.serialize_entry("size", size)?;
            }
        }
        map.end()
    }
}

/// Resource limits: what a requester allows, or what a provider promises not to exceed.
/// `None` means "not stated".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_millicores: Option<u32>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Disk in bytes.
    pub disk_bytes: Option<u64>,
}

impl Resources {
    /// Whether a provider's stated consumption (`self`) stays within `limits`: every limit that
    /// is set must be matched by a stated value no larger than it.
    pub fn fits_within(&self, limits: &Resources) -> bool {
        fn fits<T: PartialOrd>(used: Option<T>, limit: Option<T>) -> bool {
            match (used, limit) {
                (_, None) => true,
                (Some(used), Some(limit)) => used <= limit,
                (None, Some(_)) => false,
            }
        }
        fits(self.cpu_millicores, limits.cpu_millicores)
            && fits(self.memory_bytes, limits.memory_bytes)
            && fits(self.disk_bytes, limits.disk_bytes)
    }

    fn to_value(&self) -> Value {
        Value::Array(vec![
            cbor::opt(self.cpu_millicores, |v| cbor::uint(v.into())),
            cbor::opt(self.memory_bytes, cbor::uint),
            cbor::opt(self.disk_bytes, cbor::uint),
        ])
    }

    fn from_value(value: Value) -> Result<Self> {
        let [cpu, memory, disk] = cbor::tuple(value, "resources")?;
        Ok(Resources {
            cpu_millicores: cbor::as_opt(cpu, |v| cbor::as_u32(v, "resources.cpu_millicores"))?,
            memory_bytes: cbor::as_opt(memory, |v| cbor::as_u64(v, "resources.memory_bytes"))?,
            disk_bytes: cbor::as_opt(disk, |v| cbor::as_u64(v, "resources.disk_bytes"))?,
        })
    }
}

/// What an acceptable offer must satisfy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Constraints {
    /// Highest acceptable cost (the budget), in cost units.
    pub max_cost: Option<u64>,
    /// When the work must be done, unix ms.
    pub deadline_ms: Option<u64>,
    /// Lowest acceptable reliability, in basis points.
    pub min_reliability_bps: Option<u16>,
    /// Resource limits the provider must stay within.
    pub resources: Resources,
}

impl Constraints {
    fn to_value(&self) -> Value {
        Value::Array(vec![
            cbor::opt(self.max_cost, cbor::uint),
            cbor::opt(self.deadline_ms, cbor::uint),
            cbor::opt(self.min_reliability_bps, |v| cbor::uint(v.into())),
            self.resources.to_value(),
        ])
    }

    fn from_value(value: Value) -> Result<Self> {
        let [max_cost, deadline, reliability, resources] = cbor::tuple(value, "constraints")?;
        Ok(Constraints {
            max_cost: cbor::as_opt(max_cost, |v| cbor::as_u64(v, "constraints.max_cost"))?,
            deadline_ms: cbor::as_opt(deadline, |v| cbor::as_u64(v, "constraints.deadline_ms"))?,
            min_reliability_bps: cbor::as_opt(reliability, |v| {
                cbor::as_bps(v, "constraints.min_reliability_bps")
            })?,
            resources: Resources::from_value(resources)?,
        })
    }
}

/// Relative weights of the weighted auction objective, in thousandths (1000 = weight 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Weights {
    /// Weight of (normalised, lower is better) cost.
    pub cost: u32,
    /// Weight of (normalised, lower is better) estimated completion time.
    pub latency: u32,
    /// Weight of (normalised, higher is better) reliability.
    pub reliability: u32,
}

/// How the requester selects among valid offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The cheapest offer wins.
    #[default]
    LowestCost,
    /// The most reliable offer wins.
    HighestQuality,
    /// The offer with the shortest estimated completion time wins.
    Fastest,
    /// The best weighted score over normalised cost, latency and reliability wins.
    Weighted(Weights),
}

impl Strategy {
    fn to_value(self) -> Value {
        match self {
            Strategy::LowestCost => Value::Array(vec![cbor::uint(0)]),
            Strategy::HighestQuality => Value::Array(vec![cbor::uint(1)]),
            Strategy::Fastest => Value::Array(vec![cbor::uint(2)]),
            Strategy::Weighted(w) => Value::Array(vec![
                cbor::uint(3),
                cbor::uint(w.cost.into()),
                cbor::uint(w.latency.into()),
                cbor::uint(w.reliability.into()),
            ]),
        }
    }

    fn from_value(value: Value) -> Result<Self> {
        const F: &str = "intent.strategy";
        let (tag, items) = cbor::tagged(value, F, 4)?;
        let strategy = match tag {
            0 => Strategy::LowestCost,
            1 => Strategy::HighestQuality,
            2 => Strategy::Fastest,
            3 => {
                let [cost, latency, reliability] = cbor::rest(items, F)?;
                let weights = Weights {
                    cost: cbor::as_u32(cost, F)?,
                    latency: cbor::as_u32(latency, F)?,
                    reliability: cbor::as_u32(reliability, F)?,
                };
                check_weights(&weights)?;
                return Ok(Strategy::Weighted(weights));
            }
            other => {
                return Err(ProtocolError::field(
                    F,
                    format!("unknown strategy tag {other}"),
                ));
            }
        };
        if !items.is_empty() {
            return Err(ProtocolError::field(
                F,
                "unexpected items after the strategy tag",
            ));
        }
        Ok(strategy)
    }
}

fn check_weights(w: &Weights) -> Result<()> {
    const LIMIT: u32 = 1_000_000;
    if w.cost == 0 && w.latency == 0 && w.reliability == 0 {
        return Err(ProtocolError::field(
            "intent.strategy",
            "all weights are zero",
        ));
    }
    if w.cost > LIMIT || w.latency > LIMIT || w.reliability > LIMIT {
        return Err(ProtocolError::field(
            "intent.strategy",
            "a weight is above 1000.000",
        ));
    }
    Ok(())
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::LowestCost => f.write_str("lowest-cost"),
            Strategy::HighestQuality => f.write_str("highest-quality"),
            Strategy::Fastest => f.write_str("fastest"),
            Strategy::Weighted(w) => write!(
                f,
                "weighted:cost={},latency={},reliability={}",
                Thousandths(w.cost),
                Thousandths(w.latency),
                Thousandths(w.reliability)
            ),
        }
    }
}

/// Formats thousandths as a short decimal (1500 -> "1.5").
struct Thousandths(u32);

impl fmt::Display for Thousandths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// Parses a non-negative decimal with at most three fractional digits into thousandths.
fn parse_thousandths(text: &str) -> std::result::Result<u32, String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_only(int) || !digits_only(frac) || frac.len() > 3 {
        return Err(format!(
            "`{text}` is not a decimal with at most 3 fractional digits"
        ));
    }
    let int: u32 = int.parse().map_err(|_| format!("`{text}` is too large"))?;
    let frac: u32 = format!("{frac:0<3}")
        .parse()
        .map_err(|_| format!("bad fraction in `{text}`"))?;
    int.checked_mul(1000)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl FromStr for Strategy {
    type Err = ProtocolError;

    /// Parses `lowest-cost`, `highest-quality`, `fastest` or
    /// `weighted:cost=W,latency=W,reliability=W` (weights are decimals; omitted ones are 0).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = |problem: String| ProtocolError::field("strategy", problem);
        match s {
            "lowest-cost" => return Ok(Strategy::LowestCost),
            "highest-quality" => return Ok(Strategy::HighestQuality),
            "fastest" => return Ok(Strategy::Fastest),
            _ => {}
        }
        let Some(spec) = s.strip_prefix("weighted:") else {
            return Err(bad(format!(
                "unknown strategy `{s}`; expected lowest-cost, highest-quality, fastest or \
                 weighted:cost=W,latency=W,reliability=W"
            )));
        };
        let mut weights = Weights {
            cost: 0,
            latency: 0,
            reliability: 0,
        };
        for part in spec.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not NAME=WEIGHT")))?;
            let value = parse_thousandths(value.trim()).map_err(bad)?;
            match name.trim() {
                "cost" => weights.cost = value,
                "latency" => weights.latency = value,
                "reliability" => weights.reliability = value,
                other => {
                    return Err(bad(format!(
                        "unknown weight `{other}`; expected cost, latency or reliability"
                    )));
                }
            }
        }
        check_weights(&weights)?;
        Ok(Strategy::Weighted(weights))
    }
}

impl Serialize for Strategy {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which coordination pattern the requester asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternHint {
    /// Let the node choose (adaptive).
    #[default]
    Adaptive = 0,
    /// Offers, award to the best, progress, done, receipt.
    ContractNet = 1,
    /// Contract-net with an explicit selection objective.
    Auction = 2,
    /// A multi-stage pipeline.
    Workflow = 3,
    /// Split into sub-tasks run at the same time.
    Parallel = 4,
    /// A committee approves before execution.
    Consensus = 5,
}

impl PatternHint {
    const ALL: [PatternHint; 6] = [
        PatternHint::Adaptive,
        PatternHint::ContractNet,
        PatternHint::Auction,
        PatternHint::Workflow,
        PatternHint::Parallel,
        PatternHint::Consensus,
    ];

    /// The name used by the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            PatternHint::Adaptive => "adaptive",
            PatternHint::ContractNet => "contract-net",
            PatternHint::Auction => "auction",
            PatternHint::Workflow => "workflow",
            PatternHint::Parallel => "parallel",
            PatternHint::Consensus => "consensus",
        }
    }

    fn from_value(value: Value) -> Result<Self> {
        let code = cbor::as_u64(value, "intent.pattern")?;
        PatternHint::ALL
            .into_iter()
            .find(|p| *p as u64 == code)
            .ok_or_else(|| {
                ProtocolError::field("intent.pattern", format!("unknown pattern {code}"))
            })
    }
}

impl fmt::Display for PatternHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PatternHint {
    type Err = ProtocolError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        PatternHint::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            ProtocolError::field(
                "pattern",
                format!(
                    "unknown pattern `{s}`; expected adaptive, contract-net, auction, workflow, \
                     parallel or consensus"
                ),
            )
        })
    }
}

/// An approval committee: who votes and how many approvals are needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Committee {
    /// The voters, each at most once.
    pub members: Vec<PublicKey>,
    /// Approving votes needed, between 1 and the number of members.
    pub threshold: u32,
}

impl Committee {
    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Array(self.members.iter().map(cbor::key).collect()),
            cbor::uint(self.threshold.into()),
        ])
    }

    fn from_value(value: Value, field: &'static str) -> Result<Self> {
        let [members, threshold] = cbor::tuple(value, field)?;
        let members = cbor::array(members, field, MAX_COMMITTEE)?
            .into_iter()
            .map(|v| cbor::as_key(v, field))
            .collect::<Result<Vec<_>>>()?;
        let committee = Committee {
            members,
            threshold: cbor::as_u32(threshold, field)?,
        };
        committee.check(field)?;
        Ok(committee)
    }

    fn check(&self, field: &'static str) -> Result<()> {
        if self.members.is_empty() || self.members.len() > MAX_COMMITTEE {
            return Err(ProtocolError::field(
                field,
                format!("committee needs 1 to {MAX_COMMITTEE} members"),
            ));
        }
        let unique: HashSet<_> = self.members.iter().collect();
        if unique.len() != self.members.len() {
            return Err(ProtocolError::field(field, "a member is listed twice"));
        }
        if self.threshold == 0 || self.threshold as usize > self.members.len() {
            return Err(ProtocolError::field(
                field,
                format!(
                    "threshold {} is not between 1 and {} members",
                    self.threshold,
                    self.members.len()
                ),
            ));
        }
        Ok(())
    }
}

/// What is wanted: the root of a coordination trace (or of a sub-trace in a workflow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Intent {
    /// The capability wanted, e.g. `sha256`.
    pub capability: String,
    /// The task input.
    pub input: Payload,
    /// What an acceptable offer must satisfy.
    pub constraints: Constraints,
    /// How the winner is selected.
    pub strategy: Strategy,
    /// The pattern asked for.
    pub pattern: PatternHint,
    /// Who must approve before execution, if anyone.
    pub committee: Option<Committee>,
    /// A random number that makes otherwise equal intents distinct.
    pub nonce: u64,
    /// When the intent stops accepting offers, unix ms.
    pub expires_at_ms: u64,
    /// Which providers are asked to offer: `None` (encoded by leaving the field out) asks every
    /// provider of the capability; `Some` asks a deterministic sample of about
    /// `wanted` of them (see [`Audience`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
}

/// The audience of an intent: the requester wants about `wanted` offers and believes about
/// `of` providers serve the capability. Each provider decides alone and deterministically
/// whether it is in the audience ([`Audience::includes`]): it is when its *draw* (a hash of the
/// intent id and its public key, [`Audience::draw`]) falls below the fraction `wanted / of` of
/// the 64-bit range. So about `wanted` providers answer however many there are, a provider
/// cannot choose to be in (the draw is fixed by the intent's id), and anyone can check
/// afterwards who was asked. A requester that got too few offers re-publishes (a new intent
/// id, so a new sample), typically without an audience.
///
/// Encoded as `[wanted, of]`, `1 <= wanted < of <= 2^32 - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Audience {
    /// How many offers the requester wants, about.
    pub wanted: u32,
    /// How many providers the requester believes serve the capability (a lower bound errs on
    /// the side of more offers).
    pub of: u32,
}

/// The domain tag hashed before the intent id and provider key in an audience draw.
pub const AUDIENCE_TAG: &[u8] = b"pervasive.link/pvl/audience";

impl Audience {
    /// The audience that asks for about `wanted` offers among about `of` providers, or `None`
    /// (everyone) when that would be all of them anyway.
    pub fn new(wanted: u32, of: u32) -> Option<Audience> {
        (wanted >= 1 && wanted < of).then_some(Audience { wanted, of })
    }

    /// A provider's draw for an intent: the first 8 bytes, big-endian, of
    /// SHA-256(`AUDIENCE_TAG` || 0x00 || intent id (32 bytes) || provider public key (32 bytes)).
    pub fn draw(intent: &ObjectId, provider: &PublicKey) -> u64 {
        let mut input = Vec::with_capacity(AUDIENCE_TAG.len() + 65);
        input.extend_from_slice(AUDIENCE_TAG);
        input.push(0);
        input.extend_from_slice(&intent.0);
        input.extend_from_slice(provider.as_bytes());
        let hash = crate::ids::sha256(&input);
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        u64::from_be_bytes(first)
    }

    /// Whether `provider` is asked to offer on `intent`: `draw * of < wanted * 2^64`, computed
    /// exactly in 128-bit integers.
    pub fn includes(&self, intent: &ObjectId, provider: &PublicKey) -> bool {
        let draw = u128::from(Self::draw(intent, provider));
        draw * u128::from(self.of) < u128::from(self.wanted) << 64
    }

    fn check(&self) -> Result<()> {
        if self.wanted == 0 || self.wanted >= self.of {
            return Err(ProtocolError::field(
                "intent.audience",
                format!(
                    "wanted {} must be at least 1 and below of {} (leave the audience out to ask everyone)",
                    self.wanted, self.of
                ),
            ));
        }
        Ok(())
    }
}

/// A provider's terms for an intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// The intent answered.
    pub intent: ObjectId,
    /// Execution cost in cost units.
    pub cost: u64,
    /// Estimated completion time from award to done, in ms.
    pub eta_ms: u64,
    /// Reliability guarantee, in basis points.
    pub reliability_bps: u16,
    /// Resource consumption the provider will not exceed.
    pub resources: Resources,
    /// When the offer lapses, unix ms.
    pub expires_at_ms: u64,
}

/// The award: the requester starts a task on the chosen offer. The id of this object is the
/// task id that progress, done and receipt refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStart {
    /// The chosen offer.
    pub offer: ObjectId,
    /// The provider who made the offer and must do the work.
    pub provider: PublicKey,
    /// A short label for the task within its trace (e.g. `main`, `shard-2`, `stage:resize`).
    pub label: String,
    /// The input for this task.
    pub input: Payload,
    /// When the task must be done, unix ms.
    pub deadline_ms: Option<u64>,
    /// The quorum certificate that approved execution, when a committee had to approve.
    pub quorum: Option<Box<SignedObject>>,
}

/// A provider's progress report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskProgress {
    /// The task (id of its `TaskStart`).
    pub task: ObjectId,
    /// Fraction done, in basis points.
    pub fraction_bps: Option<u16>,
    /// A human-readable note.
    pub message: String,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// The task succeeded.
    Ok,
    /// The task failed, with the reason.
    Failed(String),
}

impl TaskStatus {
    /// Whether the task succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, TaskStatus::Ok)
    }

    fn to_value(&self) -> Value {
        match self {
            TaskStatus::Ok => Value::Array(vec![cbor::uint(0)]),
            TaskStatus::Failed(reason) => Value::Array(vec![cbor::uint(1), cbor::text(reason)]),
        }
    }

    fn from_value(value: Value, field: &'static str) -> Result<Self> {
        let (tag, items) = cbor::tagged(value, field, 2)?;
        match tag {
            0 => {
                let [] = cbor::rest(items, field)?;
                Ok(TaskStatus::Ok)
            }
            1 => {
                let [reason] = cbor::rest(items, field)?;
                Ok(TaskStatus::Failed(cbor::as_text(
                    reason,
                    field,
                    MAX_TEXT_LEN,
                )?))
            }
            other => Err(ProtocolError::field(
                field,
                format!("unknown status tag {other}"),
            )),
        }
    }
}

/// A provider's final report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskDone {
    /// The task (id of its `TaskStart`).
    pub task: ObjectId,
    /// Success or failure with a reason.
    pub status: TaskStatus,
    /// The output, when there is one.
    pub output: Option<Payload>,
    /// When execution started, unix ms.
    pub started_at_ms: u64,
    /// When execution finished, unix ms.
    pub finished_at_ms: u64,
}

/// Offline-verifiable evidence of execution. Signed by the provider; the requester named in
/// it countersigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The task (id of its `TaskStart`).
    pub task: ObjectId,
    /// The intent the task served.
    pub intent: ObjectId,
    /// The requester, who countersigns.
    pub requester: PublicKey,
    /// Success or failure with a reason.
    pub status: TaskStatus,
    /// SHA-256 of the output, when there is one.
    #[serde(serialize_with = "serialize_opt_hash")]
    pub output_sha256: Option<[u8; 32]>,
    /// Size of the output in bytes.
    pub output_size: u64,
    /// The cost charged, in cost units.
    pub cost: u64,
    /// When execution started, unix ms.
    pub started_at_ms: u64,
    /// When execution finished, unix ms.
    pub finished_at_ms: u64,
}

fn serialize_opt_hash<S: serde::Serializer>(
    hash: &Option<[u8; 32]>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match hash {
        Some(hash) => serializer.serialize_str(&hex::encode(hash)),
        None => serializer.serialize_none(),
    }
}

/// An immutable observation or decision, e.g. why an offer won.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// A short machine-readable type, e.g. `selection`, `reassigned` (capability-name charset).
    /// The types pvl writes are [`crate::EventType`]: read this field through [`Event::kind`]
    /// or [`Event::is`], write it as `EventType::Selection.to_string()` and the like.
    pub event_type: String,
    /// The objects the event is about.
    pub about: Vec<ObjectId>,
    /// A human-readable explanation.
    pub message: String,
    /// Structured details as ordered key/value pairs (keys: [`crate::attr`]; read one with
    /// [`Event::attr`]).
    pub attrs: Vec<(String, String)>,
}

/// How a provider prices a capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceModel {
    /// The same price for every task.
    Fixed(u64),
    /// A base price plus a price per KiB of input.
    PerKib {
        /// Price of any task.
        base: u64,
        /// Price added per KiB (1024 bytes, rounded up) of input.
        per_kib: u64,
    },
}

/// A provider announces that it serves a capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityAd {
    /// The capability name.
    pub capability: String,
    /// Its version, free text such as `1.0`.
    pub version: String,
    /// What input it takes.
    pub input_desc: String,
    /// What output it gives.
    pub output_desc: String,
    /// How it is priced.
    pub price: PriceModel,
    /// How many tasks it runs at once at most.
    pub max_concurrent: u32,
    /// When the advertisement lapses unless renewed, unix ms.
    pub expires_at_ms: u64,
}

/// A consensus round is opened on a subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    /// The object voted on (typically the offer to award).
    pub subject: ObjectId,
    /// The round number, from 1.
    pub round: u32,
    /// Who votes and the threshold.
    pub committee: Committee,
    /// What approval permits, in words.
    pub action: String,
    /// When voting closes, unix ms.
    pub deadline_ms: u64,
}

/// A committee member's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vote {
    /// The proposal voted on.
    pub proposal: ObjectId,
    /// The round of that proposal.
    pub round: u32,
    /// Approve or reject.
    pub approve: bool,
    /// Why.
    pub reason: String,
}

/// A threshold of approving votes for one proposal, self-contained: it embeds the signed
/// proposal and the signed votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumCert {
    /// The signed proposal.
    pub proposal: Box<SignedObject>,
    /// The signed approving votes, at least the committee threshold, distinct voters.
    pub votes: Vec<SignedObject>,
}

/// Why a bidder lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectCode {
    /// Valid, but another offer was selected.
    NotSelected = 0,
    /// Cost above the budget.
    OverBudget = 1,
    /// Cannot finish before the deadline.
    TooSlow = 2,
    /// Reliability below the minimum.
    LowReliability = 3,
    /// The offer expired before selection.
    Expired = 4,
    /// Resource consumption above the limits.
    ResourceLimits = 5,
    /// The intent was cancelled or failed.
    Cancelled = 6,
    /// Any other reason (see the detail).
    Other = 7,
}

impl RejectCode {
    /// Every code, in wire order.
    pub const ALL: [RejectCode; 8] = [
        RejectCode::NotSelected,
        RejectCode::OverBudget,
        RejectCode::TooSlow,
        RejectCode::LowReliability,
        RejectCode::Expired,
        RejectCode::ResourceLimits,
        RejectCode::Cancelled,
        RejectCode::Other,
    ];

    /// The name used in JSON and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::NotSelected => "not-selected",
            RejectCode::OverBudget => "over-budget",
            RejectCode::TooSlow => "too-slow",
            RejectCode::LowReliability => "low-reliability",
            RejectCode::Expired => "expired",
            RejectCode::ResourceLimits => "resource-limits",
            RejectCode::Cancelled => "cancelled",
            RejectCode::Other => "other",
        }
    }
}

/// Sent to a losing bidder with the reason it lost. One reject may refuse several offers (of
/// one intent, each with its own reason): the same signed object then goes to each of their
/// providers, and each provider acts on the entries naming its own offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// The offer rejected.
    pub offer: ObjectId,
    /// The reason, as a code.
    pub code: RejectCode,
    /// The reason, in words.
    pub detail: String,
    /// Further offers refused by this same object, at most [`crate::MAX_REJECT_OFFERS`] - 1,
    /// all distinct from each other and from `offer`. Empty for a reject of one offer, which
    /// then encodes exactly as a three-field reject.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<RejectedOffer>,
}

/// One further offer refused by a [`Reject`], with its own reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedOffer {
    /// The offer rejected.
    pub offer: ObjectId,
    /// The reason, as a code.
    pub code: RejectCode,
    /// The reason, in words.
    pub detail: String,
}

impl Reject {
    /// A reject of one offer.
    pub fn one(offer: ObjectId, code: RejectCode, detail: impl Into<String>) -> Reject {
        Reject {
            offer,
            code,
            detail: detail.into(),
            more: Vec::new(),
        }
    }

    /// Every offer this reject refuses, with its reason, `offer` first.
    pub fn entries(&self) -> impl Iterator<Item = (ObjectId, RejectCode, &str)> {
        std::iter::once((self.offer, self.code, self.detail.as_str())).chain(
            self.more
                .iter()
                .map(|m| (m.offer, m.code, m.detail.as_str())),
        )
    }

    /// The reason this reject gives for `offer`, if it names it.
    pub fn reason_for(&self, offer: &ObjectId) -> Option<(RejectCode, &str)> {
        self.entries()
            .find(|(o, _, _)| o == offer)
            .map(|(_, code, detail)| (code, detail))
    }

    fn check(&self) -> Result<()> {
        if self.more.len() + 1 > crate::MAX_REJECT_OFFERS {
            return Err(ProtocolError::field(
                "reject.more",
                format!(
                    "{} offers, at most {}",
                    self.more.len() + 1,
                    crate::MAX_REJECT_OFFERS
                ),
            ));
        }
        let distinct: HashSet<ObjectId> = self.entries().map(|(o, _, _)| o).collect();
        if distinct.len() != self.more.len() + 1 {
            return Err(ProtocolError::field(
                "reject.more",
                "an offer is named twice",
            ));
        }
        Ok(())
    }
}

/// The body of an envelope: one coordination object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// See [`Intent`].
    Intent(Intent),
    /// See [`Offer`].
    Offer(Offer),
    /// See [`TaskStart`].
    TaskStart(TaskStart),
    /// See [`TaskProgress`].
    TaskProgress(TaskProgress),
    /// See [`TaskDone`].
    TaskDone(TaskDone),
    /// See [`Receipt`].
    Receipt(Receipt),
    /// See [`Event`].
    Event(Event),
    /// See [`CapabilityAd`].
    CapabilityAd(CapabilityAd),
    /// See [`Proposal`].
    Proposal(Proposal),
    /// See [`Vote`].
    Vote(Vote),
    /// See [`QuorumCert`].
    QuorumCert(QuorumCert),
    /// See [`Reject`].
    Reject(Reject),
}

/// Checks a capability (or event type) name: 1 to 64 ASCII `[A-Za-z0-9._:/-]`.
pub(crate) fn check_name(name: &str, field: &'static str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-');
    if name.is_empty() || name.len() > MAX_CAPABILITY_LEN || !name.chars().all(ok_char) {
        return Err(ProtocolError::field(
            field,
            format!("`{name}` is not 1 to {MAX_CAPABILITY_LEN} characters of [A-Za-z0-9._:/-]"),
        ));
    }
    Ok(())
}

fn name(value: Value, field: &'static str) -> Result<String> {
    let name = cbor::as_text(value, field, MAX_CAPABILITY_LEN)?;
    check_name(&name, field)?;
    Ok(name)
}

fn text(value: Value, field: &'static str) -> Result<String> {
    cbor::as_text(value, field, MAX_TEXT_LEN)
}

impl Body {
    /// The task a `task_progress`, `task_done` or `receipt` reports on (the id of its
    /// `task_start`); `None` for every other kind.
    pub fn task(&self) -> Option<ObjectId> {
        match self {
            Body::TaskProgress(p) => Some(p.task),
            Body::TaskDone(d) => Some(d.task),
            Body::Receipt(r) => Some(r.task),
            _ => None,
        }
    }

    /// The kind of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Intent(_) => Kind::Intent,
            Body::Offer(_) => Kind::Offer,
            Body::TaskStart(_) => Kind::TaskStart,
            Body::TaskProgress(_) => Kind::TaskProgress,
            Body::TaskDone(_) => Kind::TaskDone,
            Body::Receipt(_) => Kind::Receipt,
            Body::Event(_) => Kind::Event,
            Body::CapabilityAd(_) => Kind::CapabilityAd,
            Body::Proposal(_) => Kind::Proposal,
            Body::Vote(_) => Kind::Vote,
            Body::QuorumCert(_) => Kind::QuorumCert,
            Body::Reject(_) => Kind::Reject,
        }
    }

    /// The expiry the body declares, for kinds that have one.
    pub fn expires_at_ms(&self) -> Option<u64> {
        match self {
            Body::Intent(b) => Some(b.expires_at_ms),
            Body::Offer(b) => Some(b.expires_at_ms),
            Body::CapabilityAd(b) => Some(b.expires_at_ms),
            Body::Proposal(b) => Some(b.deadline_ms),
            _ => None,
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        use cbor::{id, key, opt, text as t, uint};
        let items = match self {
            Body::Intent(b) => vec![
                t(&b.capability),
                b.input.to_value(),
                b.constraints.to_value(),
                b.strategy.to_value(),
                uint(b.pattern as u64),
                opt(b.committee.as_ref(), Committee::to_value),
                uint(b.nonce),
                uint(b.expires_at_ms),
            ]
            .into_iter()
            .chain(
                b.audience
                    .map(|a| Value::Array(vec![uint(a.wanted.into()), uint(a.of.into())])),
            )
            .collect(),
            Body::Offer(b) => vec![
                id(&b.intent),
                uint(b.cost),
                uint(b.eta_ms),
                uint(b.reliability_bps.into()),
                b.resources.to_value(),
                uint(b.expires_at_ms),
            ],
            Body::TaskStart(b) => vec![
                id(&b.offer),
                key(&b.provider),
                t(&b.label),
                b.input.to_value(),
                opt(b.deadline_ms, uint),
                opt(b.quorum.as_ref(), |q| cbor::bytes(q.bytes())),
            ],
            Body::TaskProgress(b) => vec![
                id(&b.task),
                opt(b.fraction_bps, |v| uint(v.into())),
                t(&b.message),
            ],
            Body::TaskDone(b) => vec![
                id(&b.task),
                b.status.to_value(),
                opt(b.output.as_ref(), Payload::to_value),
                uint(b.started_at_ms),
                uint(b.finished_at_ms),
            ],
            Body::Receipt(b) => vec![
                id(&b.task),
                id(&b.intent),
                key(&b.requester),
                b.status.to_value(),
                opt(b.output_sha256.as_ref(), |h| cbor::bytes(h)),
                uint(b.output_size),
                uint(b.cost),
                uint(b.started_at_ms),
                uint(b.finished_at_ms),
            ],
            Body::Event(b) => vec![
                t(&b.event_type),
                Value::Array(b.about.iter().map(id).collect()),
                t(&b.message),
                Value::Array(
                    b.attrs
                        .iter()
                        .map(|(k, v)| Value::Array(vec![t(k), t(v)]))
                        .collect(),
                ),
            ],
            Body::CapabilityAd(b) => vec![
                t(&b.capability),
                t(&b.version),
                t(&b.input_desc),
                t(&b.output_desc),
                match &b.price {
                    PriceModel::Fixed(price) => Value::Array(vec![uint(0), uint(*price)]),
                    PriceModel::PerKib { base, per_kib } => {
                        Value::Array(vec![uint(1), uint(*base), uint(*per_kib)])
                    }
                },
                uint(b.max_concurrent.into()),
                uint(b.expires_at_ms),
            ],
            Body::Proposal(b) => vec![
                id(&b.subject),
                uint(b.round.into()),
                b.committee.to_value(),
                t(&b.action),
                uint(b.deadline_ms),
            ],
            Body::Vote(b) => vec![
                id(&b.proposal),
                uint(b.round.into()),
                Value::Bool(b.approve),
                t(&b.reason),
            ],
            Body::QuorumCert(b) => vec![
                cbor::bytes(b.proposal.bytes()),
                Value::Array(b.votes.iter().map(|v| cbor::bytes(v.bytes())).collect()),
            ],
            Body::Reject(b) => {
                let mut items = vec![id(&b.offer), uint(b.code as u64), t(&b.detail)];
                if !b.more.is_empty() {
                    items.push(Value::Array(
                        b.more
                            .iter()
                            .map(|m| {
                                Value::Array(vec![id(&m.offer), uint(m.code as u64), t(&m.detail)])
                            })
                            .collect(),
                    ));
                }
                items
            }
        };
        Value::Array(items)
    }

    /// Decodes the body of an object of kind `kind`. `depth` is the nesting depth of the
    /// enclosing object (0 for a top-level object); embedded objects may not nest further.
    pub(crate) fn from_value(kind: Kind, value: Value, depth: u8) -> Result<Body> {
        Ok(match kind {
            Kind::Intent => {
                let (
                    [
                        cap,
                        input,
                        constraints,
                        strategy,
                        pattern,
                        committee,
                        nonce,
                        expires,
                    ],
                    audience,
                ) = cbor::optional_last(value, "intent")?;
                Body::Intent(Intent {
                    capability: name(cap, "intent.capability")?,
                    input: Payload::from_value(input, "intent.input")?,
                    constraints: Constraints::from_value(constraints)?,
                    strategy: Strategy::from_value(strategy)?,
                    pattern: PatternHint::from_value(pattern)?,
                    committee: cbor::as_opt(committee, |v| {
                        Committee::from_value(v, "intent.committee")
                    })?,
                    nonce: cbor::as_u64(nonce, "intent.nonce")?,
                    expires_at_ms: cbor::as_u64(expires, "intent.expires_at_ms")?,
                    audience: audience.map(Audience::from_value).transpose()?,
                })
            }
            Kind::Offer => {
                let [intent, cost, eta, reliability, resources, expires] =
                    cbor::tuple(value, "offer")?;
                Body::Offer(Offer {
                    intent: cbor::as_id(intent, "offer.intent")?,
                    cost: cbor::as_u64(cost, "offer.cost")?,
                    eta_ms: cbor::as_u64(eta, "offer.eta_ms")?,
                    reliability_bps: cbor::as_bps(reliability, "offer.reliability_bps")?,
                    resources: Resources::from_value(resources)?,
                    expires_at_ms: cbor::as_u64(expires, "offer.expires_at_ms")?,
                })
            }
            Kind::TaskStart => {
                let [offer, provider, label, input, deadline, quorum] =
                    cbor::tuple(value, "task_start")?;
                let quorum = cbor::as_opt(quorum, |v| {
                    nested(v, "task_start.quorum", Kind::QuorumCert, depth)
                })?;
                Body::TaskStart(TaskStart {
                    offer: cbor::as_id(offer, "task_start.offer")?,
                    provider: cbor::as_key(provider, "task_start.provider")?,
                    label: text(label, "task_start.label")?,
                    input: Payload::from_value(input, "task_start.input")?,
                    deadline_ms: cbor::as_opt(deadline, |v| {
                        cbor::as_u64(v, "task_start.deadline_ms")
                    })?,
                    quorum: quorum.map(Box::new),
                })
            }
            Kind::TaskProgress => {
                let [task, fraction, message] = cbor::tuple(value, "task_progress")?;
                Body::TaskProgress(TaskProgress {
                    task: cbor::as_id(task, "task_progress.task")?,
                    fraction_bps: cbor::as_opt(fraction, |v| {
                        cbor::as_bps(v, "task_progress.fraction_bps")
                    })?,
                    message: text(message, "task_progress.message")?,
                })
            }
            Kind::TaskDone => {
                let [task, status, output, started, finished] = cbor::tuple(value, "task_done")?;
                let done = TaskDone {
                    task: cbor::as_id(task, "task_done.task")?,
                    status: TaskStatus::from_value(status, "task_done.status")?,
                    output: cbor::as_opt(output, |v| Payload::from_value(v, "task_done.output"))?,
                    started_at_ms: cbor::as_u64(started, "task_done.started_at_ms")?,
                    finished_at_ms: cbor::as_u64(finished, "task_done.finished_at_ms")?,
                };
                check_interval(done.started_at_ms, done.finished_at_ms, "task_done")?;
                Body::TaskDone(done)
            }
            Kind::Receipt => {
                let [
                    task,
                    intent,
                    requester,
                    status,
                    hash,
                    size,
                    cost,
                    started,
                    finished,
                ] = cbor::tuple(value, "receipt")?;
                let receipt = Receipt {
                    task: cbor::as_id(task, "receipt.task")?,
                    intent: cbor::as_id(intent, "receipt.intent")?,
                    requester: cbor::as_key(requester, "receipt.requester")?,
                    status: TaskStatus::from_value(status, "receipt.status")?,
                    output_sha256: cbor::as_opt(hash, |v| {
                        cbor::as_bytes32(v, "receipt.output_sha256")
                    })?,
                    output_size: cbor::as_u64(size, "receipt.output_size")?,
                    cost: cbor::as_u64(cost, "receipt.cost")?,
                    started_at_ms: cbor::as_u64(started, "receipt.started_at_ms")?,
                    finished_at_ms: cbor::as_u64(finished, "receipt.finished_at_ms")?,
                };
                check_interval(receipt.started_at_ms, receipt.finished_at_ms, "receipt")?;
                Body::Receipt(receipt)
            }
            Kind::Event => {
                let [event_type, about, message, attrs] = cbor::tuple(value, "event")?;
                let about = cbor::array(about, "event.about", MAX_EVENT_ITEMS)?
                    .into_iter()
                    .map(|v| cbor::as_id(v, "event.about"))
                    .collect::<Result<Vec<_>>>()?;
                let attrs = cbor::array(attrs, "event.attrs", MAX_EVENT_ITEMS)?
                    .into_iter()
                    .map(|pair| {
                        let [k, v] = cbor::tuple(pair, "event.attrs")?;
                        Ok((name(k, "event.attrs")?, text(v, "event.attrs")?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Body::Event(Event {
                    event_type: name(event_type, "event.event_type")?,
                    about,
                    message: text(message, "event.message")?,
                    attrs,
                })
            }
            Kind::CapabilityAd => {
                let [cap, version, input, output, price, max_concurrent, expires] =
                    cbor::tuple(value, "capability_ad")?;
                const P: &str = "capability_ad.price";
                let (tag, items) = cbor::tagged(price, P, 3)?;
                let price = match tag {
                    0 => {
                        let [price] = cbor::rest(items, P)?;
                        PriceModel::Fixed(cbor::as_u64(price, P)?)
                    }
                    1 => {
                        let [base, per_kib] = cbor::rest(items, P)?;
                        PriceModel::PerKib {
                            base: cbor::as_u64(base, P)?,
                            per_kib: cbor::as_u64(per_kib, P)?,
                        }
                    }
                    other => {
                        return Err(ProtocolError::field(
                            P,
                            format!("unknown price tag {other}"),
                        ));
                    }
                };
                Body::CapabilityAd(CapabilityAd {
                    capability: name(cap, "capability_ad.capability")?,
                    version: text(version, "capability_ad.version")?,
                    input_desc: text(input, "capability_ad.input_desc")?,
                    output_desc: text(output, "capability_ad.output_desc")?,
                    price,
                    max_concurrent: cbor::as_u32(max_concurrent, "capability_ad.max_concurrent")?,
                    expires_at_ms: cbor::as_u64(expires, "capability_ad.expires_at_ms")?,
                })
            }
            Kind::Proposal => {
                let [subject, round, committee, action, deadline] = cbor::tuple(value, "proposal")?;
                Body::Proposal(Proposal {
                    subject: cbor::as_id(subject, "proposal.subject")?,
                    round: cbor::as_u32(round, "proposal.round")?,
                    committee: Committee::from_value(committee, "proposal.committee")?,
                    action: text(action, "proposal.action")?,
                    deadline_ms: cbor::as_u64(deadline, "proposal.deadline_ms")?,
                })
            }
            Kind::Vote => {
                let [proposal, round, approve, reason] = cbor::tuple(value, "vote")?;
                Body::Vote(Vote {
                    proposal: cbor::as_id(proposal, "vote.proposal")?,
                    round: cbor::as_u32(round, "vote.round")?,
                    approve: cbor::as_bool(approve, "vote.approve")?,
                    reason: text(reason, "vote.reason")?,
                })
            }
            Kind::QuorumCert => {
                let [proposal, votes] = cbor::tuple(value, "quorum_cert")?;
                let proposal = nested(proposal, "quorum_cert.proposal", Kind::Proposal, depth)?;
                let votes = cbor::array(votes, "quorum_cert.votes", MAX_COMMITTEE)?
                    .into_iter()
                    .map(|v| nested(v, "quorum_cert.votes", Kind::Vote, depth))
                    .collect::<Result<Vec<_>>>()?;
                let cert = QuorumCert {
                    proposal: Box::new(proposal),
                    votes,
                };
                cert.check()?;
                Body::QuorumCert(cert)
            }
            Kind::Reject => {
                let ([offer, code, detail], more) = cbor::optional_last(value, "reject")?;
                let more = match more {
                    None => Vec::new(),
                    Some(list) => {
                        let items = cbor::array(list, "reject.more", crate::MAX_REJECT_OFFERS)?;
                        if items.is_empty() {
                            // An empty list would be a second encoding of "no further offers".
                            return Err(ProtocolError::NonCanonical("reject.more"));
                        }
                        items
                            .into_iter()
                            .map(|item| {
                                let [offer, code, detail] = cbor::tuple(item, "reject.more")?;
                                Ok(RejectedOffer {
                                    offer: cbor::as_id(offer, "reject.more.offer")?,
                                    code: reject_code(code, "reject.more.code")?,
                                    detail: text(detail, "reject.more.detail")?,
                                })
                            })
                            .collect::<Result<Vec<_>>>()?
                    }
                };
                Body::Reject(Reject {
                    offer: cbor::as_id(offer, "reject.offer")?,
                    code: reject_code(code, "reject.code")?,
                    detail: text(detail, "reject.detail")?,
                    more,
                })
            }
        })
    }

    /// Rules a body must obey beyond what decoding its fields checks; run before signing too.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Body::Intent(b) => {
                check_name(&b.capability, "intent.capability")?;
                if let Some(a) = &b.audience {
                    a.check()?;
                }
                if let Some(c) = &b.committee {
                    c.check("intent.committee")?;
                }
                check_payload(&b.input, "intent.input")?;
                if let Strategy::Weighted(w) = &b.strategy {
                    check_weights(w)?;
                }
                check_bps(
                    b.constraints.min_reliability_bps,
                    "constraints.min_reliability_bps",
                )
            }
            Body::Offer(b) => check_bps(Some(b.reliability_bps), "offer.reliability_bps"),
            Body::TaskStart(b) => {
                check_payload(&b.input, "task_start.input")?;
                match &b.quorum {
                    Some(q) if q.kind() != Kind::QuorumCert => Err(ProtocolError::field(
                        "task_start.quorum",
                        format!("embedded object is a {}, not a quorum_cert", q.kind()),
                    )),
                    _ => Ok(()),
                }
            }
            Body::TaskProgress(b) => check_bps(b.fraction_bps, "task_progress.fraction_bps"),
            Body::TaskDone(b) => {
                if let Some(output) = &b.output {
                    check_payload(output, "task_done.output")?;
                }
                check_interval(b.started_at_ms, b.finished_at_ms, "task_done")
            }
            Body::Receipt(b) => check_interval(b.started_at_ms, b.finished_at_ms, "receipt"),
            Body::Event(b) => {
                check_name(&b.event_type, "event.event_type")?;
                if b.about.len() > MAX_EVENT_ITEMS || b.attrs.len() > MAX_EVENT_ITEMS {
                    return Err(ProtocolError::field("event", "too many items"));
                }
                b.attrs
                    .iter()
                    .try_for_each(|(k, _)| check_name(k, "event.attrs"))
            }
            Body::CapabilityAd(b) => check_name(&b.capability, "capability_ad.capability"),
            Body::Proposal(b) => b.committee.check("proposal.committee"),
            Body::QuorumCert(b) => b.check(),
            Body::Reject(b) => b.check(),
            Body::Vote(_) => Ok(()),
        }
    }
}

fn reject_code(value: Value, field: &'static str) -> Result<RejectCode> {
    let code = cbor::as_u64(value, field)?;
    RejectCode::ALL
        .into_iter()
        .find(|c| *c as u64 == code)
        .ok_or_else(|| ProtocolError::field(field, format!("unknown code {code}")))
}

impl Audience {
    fn from_value(value: Value) -> Result<Audience> {
        let [wanted, of] = cbor::tuple(value, "intent.audience")?;
        Ok(Audience {
            wanted: cbor::as_u32(wanted, "intent.audience.wanted")?,
            of: cbor::as_u32(of, "intent.audience.of")?,
        })
    }
}

fn check_bps(value: Option<u16>, field: &'static str) -> Result<()> {
    match value {
        Some(v) if v > crate::BASIS_POINTS => Err(ProtocolError::field(
            field,
            format!("{v} is above 10000 basis points"),
        )),
        _ => Ok(()),
    }
}

fn check_payload(payload: &Payload, field: &'static str) -> Result<()> {
    match payload {
        Payload::Inline(data) if data.len() > MAX_INLINE_PAYLOAD => Err(ProtocolError::field(
            field,
            format!("{} bytes inline, at most {MAX_INLINE_PAYLOAD}", data.len()),
        )),
        _ => Ok(()),
    }
}

fn check_interval(started: u64, finished: u64, field: &'static str) -> Result<()> {
    if finished < started {
        return Err(ProtocolError::field(field, "finished before it started"));
    }
    Ok(())
}

/// Decodes an embedded signed object of a given kind. Embedded objects sit at most two levels
/// deep (a task start holds a certificate, which holds a proposal and votes).
fn nested(value: Value, field: &'static str, kind: Kind, depth: u8) -> Result<SignedObject> {
    if depth >= 2 {
        return Err(ProtocolError::field(field, "objects nested too deep"));
    }
    let bytes = cbor::as_bytes(value, field, MAX_OBJECT_SIZE)?;
    let object = SignedObject::decode_at_depth(&bytes, depth + 1)?;
    if object.kind() != kind {
        return Err(ProtocolError::field(
            field,
            format!("embedded object is a {}, expected a {kind}", object.kind()),
        ));
    }
    Ok(object)
}

impl QuorumCert {
    /// The decoded proposal inside the certificate.
    pub fn proposal_body(&self) -> Result<&Proposal> {
        match &self.proposal.envelope().body {
            Body::Proposal(p) => Ok(p),
            other => Err(ProtocolError::WrongKind {
                expected: "proposal",
                actual: other.kind().name(),
            }),
        }
    }

    /// Checks that the certificate holds at least `threshold` approving votes for its
    /// proposal and round, from distinct committee members, all in the proposal's trace.
    pub fn check(&self) -> Result<()> {
        const F: &str = "quorum_cert.votes";
        let proposal = self.proposal_body()?;
        let proposal_id = self.proposal.id();
        let members: HashSet<&PublicKey> = proposal.committee.members.iter().collect();
        let mut voters = HashSet::new();
        for vote in &self.votes {
            let Body::Vote(v) = &vote.envelope().body else {
                return Err(ProtocolError::field(F, "an embedded object is not a vote"));
            };
            let voter = vote.signer();
            if v.proposal != proposal_id || v.round != proposal.round {
                return Err(ProtocolError::field(
                    F,
                    format!("vote {} is for another round", vote.id()),
                ));
            }
            if !v.approve {
                return Err(ProtocolError::field(
                    F,
                    format!("vote {} does not approve", vote.id()),
                ));
            }
            if vote.trace_id() != self.proposal.trace_id() {
                return Err(ProtocolError::field(
                    F,
                    format!("vote {} is from another trace", vote.id()),
                ));
            }
            if !members.contains(&voter) {
                return Err(ProtocolError::field(
                    F,
                    format!("voter {voter} is not in the committee"),
                ));
            }
            if !voters.insert(voter) {
                return Err(ProtocolError::field(
                    F,
                    format!("voter {voter} voted twice"),
                ));
            }
        }
        if voters.len() < proposal.committee.threshold as usize {
            return Err(ProtocolError::field(
                F,
                format!(
                    "{} approving votes, threshold is {}",
                    voters.len(),
                    proposal.committee.threshold
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for text in [
            "lowest-cost",
            "highest-quality",
            "fastest",
            "weighted:cost=0.5,latency=0.25,reliability=2",
        ] {
            let strategy: Strategy = text.parse().unwrap();
            assert_eq!(strategy.to_string(), text);
        }
        let w: Strategy = "weighted:cost=1".parse().unwrap();
        assert_eq!(
            w,
            Strategy::Weighted(Weights {
                cost: 1000,
                latency: 0,
                reliability: 0
            })
        );
    }

    #[test]
    fn bad_strategies_are_explained() {
        for text in [
            "cheapest",
            "weighted:",
            "weighted:cost=0",
            "weighted:speed=1",
            "weighted:cost=-1",
            "weighted:cost=0.1234",
            "weighted:cost=99999999999",
        ] {
            let err = text.parse::<Strategy>().unwrap_err();
            assert!(
                matches!(
                    err,
                    ProtocolError::InvalidField {
                        field: "strategy",
                        ..
                    } | ProtocolError::InvalidField {
                        field: "intent.strategy",
                        ..
                    }
                ),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn capability_names_are_restricted() {
        assert!(check_name("sha256", "f").is_ok());
        assert!(check_name("image/resize:v2", "f").is_ok());
        assert!(check_name("", "f").is_err());
        assert!(check_name("has space", "f").is_err());
        assert!(check_name(&"x".repeat(65), "f").is_err());
    }

    #[test]
    fn resources_fit_only_within_stated_limits() {
        let limits = Resources {
            cpu_millicores: Some(1000),
            memory_bytes: None,
            disk_bytes: None,
        };
        let small = Resources {
            cpu_millicores: Some(500),
            ..Resources::default()
        };
        let big = Resources {
            cpu_millicores: Some(2000),
            ..Resources::default()
        };
        assert!(small.fits_within(&limits));
        assert!(!big.fits_within(&limits));
        assert!(!Resources::default().fits_within(&limits));
        assert!(big.fits_within(&Resources::default()));
    }

    #[test]
    fn pattern_names_round_trip() {
        for p in PatternHint::ALL {
            assert_eq!(p.name().parse::<PatternHint>().unwrap(), p);
        }
        assert!("gossip".parse::<PatternHint>().is_err());
    }
}
