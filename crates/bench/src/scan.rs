//! Finding the first of two bytes eight bytes at a time: SSE line ends (CR or LF) and JSON
//! string ends (`"` or `\`) are searched over every delivery, and a byte-at-a-time loop was
//! the largest single cost of an SSE subscriber.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `v` that is zero is set; the lowest set bit is always exact (a
/// false positive can only appear above a true zero byte).
#[inline]
fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Position of the first byte of `hay` that is `a` or `b`.
#[inline]
pub fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let (ma, mb) = (LO * u64::from(a), LO * u64::from(b));
    let mut i = 0;
    while i + 8 <= hay.len() {
        let x = u64::from_le_bytes(hay[i..i + 8].try_into().expect("8 bytes"));
        let z = zero_bytes(x ^ ma) | zero_bytes(x ^ mb);
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..]
        .iter()
        .position(|&c| c == a || c == b)
        .map(|k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn agrees_with_a_byte_loop(
            hay in prop::collection::vec(prop::sample::select(vec![0u8, 1, b'\n', b'\r', b'"', b'\\', b'a', 0x80, 0xff, 0x0b, 0x0e]), 0..64),
            a in any::<u8>(),
            b in any::<u8>(),
        ) {
            let naive = |a: u8, b: u8| hay.iter().position(|&c| c == a || c == b);
            prop_assert_eq!(find2(&hay, a, b), naive(a, b));
            prop_assert_eq!(find2(&hay, b'\n', b'\r'), naive(b'\n', b'\r'));
            prop_assert_eq!(find2(&hay, b'"', b'\\'), naive(b'"', b'\\'));
        }
    }
}
