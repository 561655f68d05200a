//! What the driver writes into an SQE's `user_data`, and the [`OpId`] a caller keeps.
//!
//! The kernel hands `user_data` back verbatim in every CQE, so it is the only link between a
//! completion and the resources its operation keeps alive. The driver owns this encoding; the
//! caller's own routing information travels separately as the opaque `tag` of each op.
//!
//! Layout of a `user_data` value:
//! - bit 63 clear: an operation in the op table; bits 32..63 hold its generation (never 0),
//!   bits 0..32 its slab key;
//! - bit 63 set: a driver-internal marker whose completion never reaches the op table (a
//!   cancel request, a wake-up received from a peer, a wake-up this driver sent).

/// Set on every marker, never on an op-table `user_data`.
const MARK: u64 = 1 << 63;
/// Generations use 31 bits so that bit 63 stays clear for op-table entries.
const GEN_MASK: u32 = 0x7FFF_FFFF;

/// The data a peer's wake-up carries (`IORING_OP_MSG_RING`): the receiving driver recognises
/// it and swallows the CQE, which exists only to end that driver's wait.
pub(crate) const WAKE_RECEIVED: u64 = MARK | 1 << 32;
/// `user_data` of a cancel request for a single op (its own CQE is swallowed).
pub(crate) const CANCEL_ONE: u64 = MARK | 2 << 32;
/// `user_data` of a cancel-everything request issued by shutdown.
pub(crate) const CANCEL_ALL: u64 = MARK | 3 << 32;
/// Prefix of the `user_data` of a wake-up this driver sent; the low 32 bits name the peer, so
/// a failure (the only CQE such an op produces) can say which peer was not woken.
const WAKE_SENT: u64 = MARK | 4 << 32;

/// What a CQE's `user_data` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// An op in the table.
    Op(OpId),
    /// A wake-up sent by a peer.
    WakeReceived,
    /// The completion of a cancel request (per-op or cancel-all).
    Cancel { all: bool },
    /// The completion of a wake-up this driver sent to `peer` (only failures are posted).
    WakeSent { peer: u32 },
    /// Nothing this driver produced (a foreign MSG_RING); ignored.
    Unknown,
}

/// Encodes the `user_data` of a wake-up sent to `peer`.
pub(crate) fn wake_sent(peer: u32) -> u64 {
    WAKE_SENT | peer as u64
}

/// Decodes a CQE's `user_data`.
pub(crate) fn decode(user_data: u64) -> Decoded {
    if user_data & MARK == 0 {
        let gen = (user_data >> 32) as u32;
        if gen == 0 {
            return Decoded::Unknown;
        }
        return Decoded::Op(OpId {
            key: user_data as u32,
            gen,
        });
    }
    match user_data {
        WAKE_RECEIVED => Decoded::WakeReceived,
        CANCEL_ONE => Decoded::Cancel { all: false },
        CANCEL_ALL => Decoded::Cancel { all: true },
        _ if user_data & !0xFFFF_FFFF == WAKE_SENT => Decoded::WakeSent {
            peer: user_data as u32,
        },
        _ => Decoded::Unknown,
    }
}

/// Names one submitted operation. Returned by every op-submitting call of the driver and
/// accepted by [`Driver::cancel`](super::Driver::cancel).
///
/// It carries the op's generation as well as its table slot, because slots are reused: an id
/// kept after its op finished must not cancel whichever op lives in that slot later. Ids are
/// `Copy` so callers can store them freely; holding one keeps nothing alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId {
    pub(crate) key: u32,
    pub(crate) gen: u32,
}

impl OpId {
    /// The `user_data` the op's SQE carries.
    pub(crate) fn user_data(self) -> u64 {
        (self.gen as u64) << 32 | self.key as u64
    }
}

/// Hands out generations: 1, 2, …, 2^31 - 1, then 1 again (never 0, never bit 31).
#[derive(Debug)]
pub(crate) struct Generations {
    next: u32,
}

impl Generations {
    pub(crate) fn new() -> Self {
        Self { next: 1 }
    }

    pub(crate) fn next(&mut self) -> u32 {
        let gen = self.next;
        self.next = (self.next + 1) & GEN_MASK;
        if self.next == 0 {
            self.next = 1;
        }
        gen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_round_trip_and_markers_never_collide_with_them() {
        let id = OpId {
            key: 0xFFFF_FFFF,
            gen: GEN_MASK,
        };
        assert_eq!(decode(id.user_data()), Decoded::Op(id));
        assert_eq!(decode(WAKE_RECEIVED), Decoded::WakeReceived);
        assert_eq!(decode(CANCEL_ONE), Decoded::Cancel { all: false });
        assert_eq!(decode(CANCEL_ALL), Decoded::Cancel { all: true });
        assert_eq!(decode(wake_sent(7)), Decoded::WakeSent { peer: 7 });
        assert_eq!(decode(0), Decoded::Unknown, "generation 0 is never issued");
        assert_eq!(decode(MARK | 99 << 32), Decoded::Unknown);
        assert_eq!(decode(WAKE_RECEIVED | 1), Decoded::Unknown);
    }

    #[test]
    fn generations_skip_zero_and_stay_below_bit_31() {
        let mut g = Generations { next: GEN_MASK };
        assert_eq!(g.next(), GEN_MASK);
        assert_eq!(g.next(), 1);
        assert_eq!(g.next(), 2);
    }
}
