//! Redis glob patterns (PSUBSCRIBE, PUBSUB CHANNELS), with the semantics of Redis's
//! `stringmatchlen` (nocase=0): `*`, `?`, `[abc]`, `[^a-z]`, `\` escapes, and its nesting
//! limit, but in guaranteed O(n·⌈m/64⌉) time instead of by backtracking.
//!
//! The old backtracking port (kept as [`reference_glob_match`] for tests and fuzzing) was
//! O(n·m) on `*aaaa…b*`-shaped patterns: a 100 KB pattern froze a shard for 6 s on one
//! PUBLISH. A [`Glob`] is compiled once, when the pattern is subscribed, and then matched
//! against every published channel:
//!
//! * The pattern is split into *tokens* exactly as Redis walks it (a literal byte, `?`, a
//!   class, or a `*` group; consecutive `*` collapse). Every non-`*` token consumes exactly
//!   one byte.
//! * For a non-empty string, Redis's loop is the textbook glob semantics (a `*` matches any
//!   run of bytes, possibly empty); for the empty string only the empty pattern matches
//!   (Redis's loop never runs, so `*` does not match `""`).
//! * The tokens before the first `*` (the *head*) and after the last `*` (the *tail*) are
//!   anchored: they are compared with the start and the end of the string directly (a
//!   `memcmp` when they are all literal bytes). `news.*` is a prefix test, `*.tech` a suffix
//!   test, a pattern without `*` a fixed-width comparison (equality when literal).
//! * The tokens between the first and the last `*` (the *middle*) run as a bit-parallel
//!   Shift-And NFA over the middle of the string: one bit per token, a `*` is a self-loop on
//!   the bit of the token before it. One step costs ⌈k/64⌉ word operations (k = middle
//!   tokens) and there is one step per byte, with an early exit on acceptance (the last `*`
//!   accepts anything after).

use std::collections::HashMap;

mod reference;

/// The old backtracking matcher, a port of Redis's `stringmatchlen` line by line: the
/// executable specification [`Glob`] is checked against by the unit tests, the
/// differential proptests and the fuzz target. Not for serving traffic: its worst case is
/// O(n·m) and worse (see the module docs).
#[doc(hidden)]
pub use reference::glob_match as reference_glob_match;

/// Deepest `*` nesting Redis follows; a match that needs deeper recursion fails (Redis's
/// `if (nesting > 1000) return 0`). See [`Glob::compile`] for how that maps onto star groups.
const MAX_NESTING: usize = 1000;

/// Words of NFA state kept on the stack in [`Glob::matches`]: middles of up to 1024 tokens
/// (far above any pattern length we accept) never allocate.
const STACK_WORDS: usize = 16;

/// A set of bytes, one bit per byte value.
type ByteSet = [u64; 4];

fn set_contains(set: &ByteSet, c: u8) -> bool {
    (set[usize::from(c >> 6)] >> (c & 63)) & 1 != 0
}

fn set_insert(set: &mut ByteSet, c: u8) {
    set[usize::from(c >> 6)] |= 1 << (c & 63);
}

/// A pattern token that consumes exactly one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    /// A literal byte (plain, `\`-escaped, or a class with a single member).
    Byte(u8),
    /// `?`, or a class that contains every byte.
    Any,
    /// A class: an index into the owner's set table.
    Set(u32),
}

/// What the tokenizer produces: `*` groups (already collapsed) between one-byte tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Star,
    Tok(Tok),
}

/// The tokenized pattern.
struct Parsed {
    items: Vec<Item>,
    /// Distinct class sets, indexed by [`Tok::Set`].
    sets: Vec<ByteSet>,
    /// Some class is empty (`[]`): no string can match.
    unmatchable: bool,
}

/// Splits a pattern into tokens exactly as `stringmatchlen` walks it.
fn parse(p: &[u8]) -> Parsed {
    let mut items = Vec::with_capacity(p.len());
    let mut sets = Vec::new();
    let mut set_ids: HashMap<ByteSet, u32> = HashMap::new();
    let mut unmatchable = false;
    let mut i = 0;
    while i < p.len() {
        let item = match p[i] {
            b'*' => {
                i += 1;
                if items.last() == Some(&Item::Star) {
                    continue;
                }
                Item::Star
            }
            b'?' => {
                i += 1;
                Item::Tok(Tok::Any)
            }
            b'[' => {
                let (set, next) = parse_class(p, i + 1);
                i = next;
                let members: u32 = set.iter().map(|w| w.count_ones()).sum();
                Item::Tok(match members {
                    256 => Tok::Any,
                    1 => Tok::Byte((0..=255u8).find(|&c| set_contains(&set, c)).unwrap_or(0)),
                    _ => {
                        unmatchable |= members == 0;
                        let id = *set_ids.entry(set).or_insert_with(|| {
                            sets.push(set);
                            (sets.len() - 1) as u32
                        });
                        Tok::Set(id)
                    }
                })
            }
            b'\\' if i + 1 < p.len() => {
                i += 2;
                Item::Tok(Tok::Byte(p[i - 1]))
            }
            c => {
                i += 1;
                Item::Tok(Tok::Byte(c))
            }
        };
        items.push(item);
    }
    Parsed {
        items,
        sets,
        unmatchable,
    }
}

/// Parses a class whose body starts at `j` (just after the `[`), returning its set and the
/// index just past it. Same order of tests as Redis: an escape (`\` and one more byte), the
/// closing `]`, the end of the pattern (an unterminated class ends there), a range `x-y`
/// (bounds compared as signed C `char`, swapped when reversed), else a literal member.
fn parse_class(p: &[u8], mut j: usize) -> (ByteSet, usize) {
    let negate = p.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut set = [0u64; 4];
    loop {
        match &p[j..] {
            [b'\\', esc, ..] => {
                set_insert(&mut set, *esc);
                j += 2;
            }
            [b']', ..] => {
                j += 1;
                break;
            }
            [] => break,
            [lo, b'-', hi, ..] => {
                // Redis compares as C `char` (signed on x86).
                let (mut lo, mut hi) = (*lo as i8, *hi as i8);
                if lo > hi {
                    std::mem::swap(&mut lo, &mut hi);
                }
                for c in lo..=hi {
                    set_insert(&mut set, c as u8);
                }
                j += 3;
            }
            [x, ..] => {
                set_insert(&mut set, *x);
                j += 1;
            }
        }
    }
    if negate {
        for w in &mut set {
            *w = !*w;
        }
    }
    (set, j)
}

/// An anchored run of one-byte tokens (the head or the tail of a pattern).
#[derive(Clone, Debug)]
enum Seg {
    /// Every token is a literal byte: a byte comparison.
    Lit(Box<[u8]>),
    /// Some token is `?` or a class; `Tok::Set` indexes the segment's own set table.
    Toks(Box<[Tok]>, Box<[ByteSet]>),
}

impl Seg {
    /// The segment of `items` (which holds no `*`), with its own copy of the sets it uses.
    fn new(items: &[Item], sets: &[ByteSet]) -> Seg {
        let toks = items.iter().map(|it| match it {
            Item::Tok(t) => *t,
            Item::Star => unreachable!("segments hold no star"),
        });
        if let Some(lit) = toks
            .clone()
            .map(|t| match t {
                Tok::Byte(b) => Some(b),
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()
        {
            return Seg::Lit(lit.into_boxed_slice());
        }
        let mut local: HashMap<u32, u32> = HashMap::new();
        let mut own = Vec::new();
        let toks = toks
            .map(|t| match t {
                Tok::Set(id) => Tok::Set(*local.entry(id).or_insert_with(|| {
                    own.push(sets[id as usize]);
                    (own.len() - 1) as u32
                })),
                t => t,
            })
            .collect();
        Seg::Toks(toks, own.into_boxed_slice())
    }

    /// Bytes this segment consumes.
    fn len(&self) -> usize {
        match self {
            Seg::Lit(b) => b.len(),
            Seg::Toks(t, _) => t.len(),
        }
    }

    /// Whether `s`, exactly `self.len()` bytes, matches token by token.
    fn matches(&self, s: &[u8]) -> bool {
        match self {
            Seg::Lit(b) => **b == *s,
            Seg::Toks(toks, sets) => toks.iter().zip(s).all(|(t, &c)| match *t {
                Tok::Byte(b) => b == c,
                Tok::Any => true,
                Tok::Set(id) => set_contains(&sets[id as usize], c),
            }),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Seg::Lit(b) => b.len(),
            Seg::Toks(t, s) => {
                std::mem::size_of_val::<[Tok]>(t) + std::mem::size_of_val::<[ByteSet]>(s)
            }
        }
    }
}

/// The bit-parallel NFA for the middle of a pattern, `*` u₀ … u_{k-1} `*` (with more `*`
/// groups possibly between the uᵢ). Bit j of the state means "u₀…u_j matched, ending at the
/// byte just read". Reading byte c: D' = ((D << 1) | 1) & B[c] | (D & L), where the `| 1`
/// is the leading `*` (a match may start anywhere), B[c] has bit j set when u_j accepts c,
/// and L has bit j set when a `*` follows u_j (it may absorb c). Bit k-1 set means the
/// middle matched; the trailing `*` takes the rest, so the search stops there.
///
/// B[c] is stored per *byte class* rather than per byte: bytes that every token treats alike
/// share one row, so the table is 256 bytes of class ids plus (classes × ⌈k/64⌉) words, and
/// the classes are few (a literal middle of d distinct bytes has d + 1).
#[derive(Clone, Debug)]
struct Nfa {
    /// Byte → row of `masks`.
    class_of: [u8; 256],
    /// ⌈k/64⌉, the words per state.
    words: usize,
    /// k, the tokens in the middle (and so the fewest bytes it can match).
    len: usize,
    /// The accepting bit (k-1) within the last word.
    accept: u64,
    /// B, `words` words per byte class.
    masks: Box<[u64]>,
    /// L, `words` words.
    loops: Box<[u64]>,
}

impl Nfa {
    /// Compiles the middle `items`: starts and ends with a token, may hold `*` groups.
    fn new(items: &[Item], sets: &[ByteSet]) -> Nfa {
        let mut toks = Vec::with_capacity(items.len());
        let mut loop_after = Vec::new();
        for it in items {
            match it {
                Item::Star => loop_after.push(toks.len() - 1),
                Item::Tok(t) => toks.push(*t),
            }
        }
        let k = toks.len();
        let words = k.div_ceil(64);

        // Partition the bytes into classes no token tells apart: refine by every distinct
        // class set, then split off every distinct literal byte.
        let mut class_of = [0u8; 256];
        let mut sizes = [0u16; 256];
        sizes[0] = 256;
        let mut classes = 1usize;
        let mut set_seen = vec![false; sets.len()];
        for t in &toks {
            if let Tok::Set(id) = *t {
                if classes < 256 && !std::mem::replace(&mut set_seen[id as usize], true) {
                    let set = &sets[id as usize];
                    let mut remap = [[u16::MAX; 2]; 256];
                    let mut next = 0u16;
                    sizes = [0; 256];
                    for c in 0..=255u8 {
                        let slot = &mut remap[usize::from(class_of[usize::from(c)])]
                            [usize::from(set_contains(set, c))];
                        if *slot == u16::MAX {
                            *slot = next;
                            next += 1;
                        }
                        class_of[usize::from(c)] = *slot as u8;
                        sizes[usize::from(*slot)] += 1;
                    }
                    classes = usize::from(next);
                }
            }
        }
        for t in &toks {
            if let Tok::Byte(b) = *t {
                let old = usize::from(class_of[usize::from(b)]);
                if sizes[old] > 1 {
                    // Fewer than 256 classes, since this one has two members or more.
                    sizes[old] -= 1;
                    class_of[usize::from(b)] = classes as u8;
                    sizes[classes] = 1;
                    classes += 1;
                }
            }
        }
        let mut rep = [0u8; 256];
        for c in (0..=255u8).rev() {
            rep[usize::from(class_of[usize::from(c)])] = c;
        }

        let mut masks = vec![0u64; classes * words];
        for (j, t) in toks.iter().enumerate() {
            let (word, bit) = (j / 64, 1u64 << (j % 64));
            match *t {
                Tok::Byte(b) => masks[usize::from(class_of[usize::from(b)]) * words + word] |= bit,
                Tok::Any => {
                    for cl in 0..classes {
                        masks[cl * words + word] |= bit;
                    }
                }
                Tok::Set(id) => {
                    for cl in 0..classes {
                        if set_contains(&sets[id as usize], rep[cl]) {
                            masks[cl * words + word] |= bit;
                        }
                    }
                }
            }
        }
        let mut loops = vec![0u64; words];
        for j in loop_after {
            loops[j / 64] |= 1 << (j % 64);
        }
        Nfa {
            class_of,
            words,
            len: k,
            accept: 1 << ((k - 1) % 64),
            masks: masks.into_boxed_slice(),
            loops: loops.into_boxed_slice(),
        }
    }

    /// Whether the middle tokens occur in `s` (which the leading and trailing `*` frame).
    fn search(&self, s: &[u8]) -> bool {
        if s.len() < self.len {
            return false;
        }
        match self.words {
            1 => self.search_one_word(s),
            // Up to 256 tokens (the longest patterns we accept): the state as a fixed-size
            // array the compiler keeps in registers and unrolls.
            2 => self.search_fixed::<2>(s),
            3 => self.search_fixed::<3>(s),
            4 => self.search_fixed::<4>(s),
            w if w <= STACK_WORDS => self.search_words(s, &mut [0u64; STACK_WORDS][..w]),
            w => self.search_words(s, &mut vec![0u64; w]),
        }
    }

    /// [`Nfa::search_words`] with the word count `N` known at compile time.
    fn search_fixed<const N: usize>(&self, s: &[u8]) -> bool {
        let loops: &[u64; N] = self.loops[..].try_into().expect("N words of loops");
        let mut state = [0u64; N];
        for &c in s {
            let row: &[u64; N] = self.masks[usize::from(self.class_of[usize::from(c)]) * N..][..N]
                .try_into()
                .expect("N words per row");
            let mut carry = 1u64;
            for i in 0..N {
                let old = state[i];
                state[i] = (((old << 1) | carry) & row[i]) | (old & loops[i]);
                carry = old >> 63;
            }
            if state[N - 1] & self.accept != 0 {
                return true;
            }
        }
        false
    }

    /// The state in one register: k ≤ 64.
    fn search_one_word(&self, s: &[u8]) -> bool {
        let loops = self.loops[0];
        let mut d = 0u64;
        for &c in s {
            let b = self.masks[usize::from(self.class_of[usize::from(c)])];
            d = (((d << 1) | 1) & b) | (d & loops);
            if d & self.accept != 0 {
                return true;
            }
        }
        false
    }

    /// The state in `state` (`self.words` zeroed words), the shift carried word to word.
    fn search_words(&self, s: &[u8], state: &mut [u64]) -> bool {
        let w = self.words;
        for &c in s {
            let row = &self.masks[usize::from(self.class_of[usize::from(c)]) * w..][..w];
            // Word by word from the top, so that word i-1 still holds the old state whose
            // top bit shifts into word i.
            let loops = &self.loops[..w];
            let state = &mut state[..w];
            for i in (1..w).rev() {
                let old = state[i];
                state[i] = (((old << 1) | (state[i - 1] >> 63)) & row[i]) | (old & loops[i]);
            }
            state[0] = (((state[0] << 1) | 1) & row[0]) | (state[0] & loops[0]);
            if state[w - 1] & self.accept != 0 {
                return true;
            }
        }
        false
    }

    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Nfa>() + 8 * (self.masks.len() + self.loops.len())
    }
}

/// What a compiled pattern checks.
#[derive(Clone, Debug)]
enum Shape {
    /// Nothing matches: an empty class, or more than [`MAX_NESTING`] non-trailing `*` groups.
    Never,
    /// No `*`: the string has exactly the segment's length and matches it (the empty
    /// pattern, an empty segment, matches only the empty string).
    Exact(Seg),
    /// head `*` middle `*` tail, where the middle (and its NFA) is absent for a single
    /// `*` group. The empty string never matches.
    Star {
        head: Seg,
        tail: Seg,
        middle: Option<Box<Nfa>>,
    },
}

/// A glob pattern compiled once (at PSUBSCRIBE) and matched against many channels (every
/// PUBLISH on the shard), with exactly the results of Redis's `stringmatchlen(nocase=0)`
/// (the old backtracking port, [`reference_glob_match`], is the specification) in
/// O(n·⌈m/64⌉) time for an n-byte string and an m-byte pattern, without allocating (up to
/// 1024 tokens between the first and the last `*`; beyond, one state vector per call).
///
/// Memory: a literal or anchored (`news.*`, `*.tech`) pattern is the struct plus its
/// bytes; a pattern with tokens between two `*` groups adds an NFA of 256 bytes of byte
/// classes plus 8 × (classes + 1) × ⌈k/64⌉ bytes ([`Glob::heap_bytes`] tells).
#[derive(Clone, Debug)]
pub struct Glob {
    shape: Shape,
}

impl Glob {
    /// Compiles `pattern` with Redis's syntax: `*`, `?`, `[abc]`, `[^a-z]`, `\x`; all of
    /// Redis's quirks are kept (see [`glob_match`]).
    ///
    /// The nesting limit: Redis recurses one level per `*` group it passes with input left
    /// and fails any branch deeper than 1000. A `*` group followed by a token can only be
    /// passed by recursing (the string cannot run out before it, the token needs a byte), so
    /// a pattern with more than 1000 such groups matches nothing; with 1000 or fewer the
    /// limit is never reached (a trailing `*` returns without recursing). Such patterns
    /// compile to a matcher that always answers false.
    pub fn compile(pattern: &[u8]) -> Glob {
        let Parsed {
            items,
            sets,
            unmatchable,
        } = parse(pattern);
        let star_groups = items.iter().filter(|&&it| it == Item::Star).count();
        let trailing = items.last() == Some(&Item::Star);
        let shape = if unmatchable || star_groups - usize::from(trailing) > MAX_NESTING {
            Shape::Never
        } else {
            let first = items.iter().position(|&it| it == Item::Star);
            let last = items.iter().rposition(|&it| it == Item::Star);
            match (first, last) {
                (Some(first), Some(last)) => Shape::Star {
                    head: Seg::new(&items[..first], &sets),
                    tail: Seg::new(&items[last + 1..], &sets),
                    middle: (last > first)
                        .then(|| Box::new(Nfa::new(&items[first + 1..last], &sets))),
                },
                _ => Shape::Exact(Seg::new(&items, &sets)),
            }
        };
        Glob { shape }
    }

    /// Whether `s` matches the pattern, exactly as Redis decides it. Takes `&self` and
    /// keeps its scratch state on the stack, so one compiled pattern can serve any number
    /// of shards or threads.
    pub fn matches(&self, s: &[u8]) -> bool {
        match &self.shape {
            Shape::Never => false,
            Shape::Exact(seg) => s.len() == seg.len() && seg.matches(s),
            Shape::Star { head, tail, middle } => {
                // Redis's loop never runs on an empty string: a `*` does not match "".
                let (h, t) = (head.len(), tail.len());
                if s.is_empty() || s.len() < h + t {
                    return false;
                }
                let rest = s.len() - t;
                // (An empty head or tail, as in `news.*` or `*.tech`, costs no call.)
                (h == 0 || head.matches(&s[..h]))
                    && (t == 0 || tail.matches(&s[rest..]))
                    && middle.as_ref().is_none_or(|nfa| nfa.search(&s[h..rest]))
            }
        }
    }

    /// Heap bytes this compiled pattern holds beyond `size_of::<Glob>()`, for memory
    /// accounting: patterns are replicated on every shard and a process may hold thousands.
    pub fn heap_bytes(&self) -> usize {
        match &self.shape {
            Shape::Never => 0,
            Shape::Exact(seg) => seg.heap_bytes(),
            Shape::Star { head, tail, middle } => {
                head.heap_bytes()
                    + tail.heap_bytes()
                    + middle.as_ref().map_or(0, |n| n.heap_bytes())
            }
        }
    }
}

/// Whether `string` matches `pattern`, case-sensitively, exactly as Redis's
/// `stringmatchlen(..., nocase=0)` decides it, so PSUBSCRIBE and PUBSUB CHANNELS select the
/// same channels as on Redis. Quirks kept on purpose: `*` never matches an empty string (but
/// `a*` matches `a`), an unterminated `[` class runs to the end of the pattern, a trailing
/// lone `\` is a literal backslash, range bounds compare as signed C `char` (Redis on x86),
/// and a pattern needing more than 1000 nested `*` levels does not match.
///
/// A convenience that compiles the pattern on every call (it allocates): a caller matching
/// one pattern against many strings should keep a [`Glob`].
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    Glob::compile(pattern).matches(string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_examples() {
        // From the PSUBSCRIBE / KEYS documentation.
        for (p, s, m) in [
            ("h?llo", "hello", true),
            ("h?llo", "hallo", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h[b-a]llo", "hallo", true),
            ("news.*", "news.tech", true),
            ("news.*", "news", false),
            ("*", "", false), // Redis: the loop never runs on an empty string
            ("", "", true),
            ("a*", "a", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("h[\\]]llo", "h]llo", true),
            ("[abc", "a", true),
        ] {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), m, "{p} vs {s}");
        }
    }

    #[test]
    fn escapes_classes_and_signed_ranges() {
        for (p, s, m) in [
            (&b"a\\"[..], &b"a\\"[..], true), // a lone trailing backslash is literal
            (b"\\?", b"?", true),
            (b"\\?", b"x", false),
            (b"[\\", b"\\", true),  // class ending in a lone backslash
            (b"[a-]", b"-", false), // "a-]" is the range ']'..'a', then the class is unterminated
            (b"[a-]", b"]", true),
            (b"[a-]", b"_", true),
            (b"[]a]", b"a", false), // a leading ']' closes an empty class, which matches nothing
            (b"[^]", b"x", true),
            (b"[-a]", b"-", true),
            (b"[\x7f-\x81]", b"\x80", false), // signed: 0x81 < 0x7f, so the range is -127..127
            (b"[\x7f-\x81]", b"a", true),
            (b"[\x80-\xff]", b"\x90", true),
            (b"*?", b"a", true),
            (b"a**", b"a", true),
            (b"a*?", b"a", false),
            (b"?", b"", false),
        ] {
            assert_eq!(
                glob_match(p, s),
                m,
                "{:?} vs {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn nesting_limit_matches_redis() {
        let s = "a".repeat(1100);
        let ok = "*a".repeat(1000);
        assert!(glob_match(ok.as_bytes(), &s.as_bytes()[..1000]));
        let too_deep = "*a".repeat(1001);
        assert!(!glob_match(too_deep.as_bytes(), &s.as_bytes()[..1001]));
    }

    #[test]
    fn adversarial_patterns_finish() {
        let p = "a*".repeat(60) + "b";
        let s = "a".repeat(200);
        assert!(!glob_match(p.as_bytes(), s.as_bytes()));
        let deep = "*".repeat(5000) + "x";
        assert!(glob_match(deep.as_bytes(), b"abcx"));
    }

    /// The compiled matcher, checked against the backtracking reference on one pair.
    fn agree(p: &[u8], s: &[u8]) {
        assert_eq!(
            Glob::compile(p).matches(s),
            reference_glob_match(p, s),
            "{:?} vs {:?}",
            String::from_utf8_lossy(p),
            String::from_utf8_lossy(s)
        );
    }

    #[test]
    fn every_short_pattern_agrees_with_reference() {
        // Every pattern of up to 4 bytes over the syntax bytes, against every string of up
        // to 4 bytes over the bytes those patterns name: exhaustive, not sampled.
        let pattern_bytes = b"ab*?[]^-\\";
        let string_bytes = b"ab-]";
        let all = |alphabet: &[u8], max: usize| {
            let mut out = vec![Vec::new()];
            let mut last = vec![Vec::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w: &Vec<u8>| alphabet.iter().map(move |&c| [&w[..], &[c]].concat()))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        };
        let strings = all(string_bytes, 4);
        for p in all(pattern_bytes, 4) {
            let g = Glob::compile(&p);
            for s in &strings {
                assert_eq!(
                    g.matches(s),
                    reference_glob_match(&p, s),
                    "{:?} vs {:?}",
                    String::from_utf8_lossy(&p),
                    String::from_utf8_lossy(s)
                );
            }
        }
    }

    #[test]
    fn signed_ranges_and_high_bytes_agree_with_reference() {
        let patterns: [&[u8]; 8] = [
            b"[\x7f-\x81]",
            b"*[\x80-\xff]*",
            b"[^\x00-\x7f]?",
            b"*[\xff-a]b*",
            b"[a-\xff]",
            b"*\\\xff*",
            b"[\\\x80]",
            b"*[]*",
        ];
        for p in patterns {
            for s in [
                &b""[..],
                b"\x80",
                b"\xff",
                b"a",
                b"\x7f",
                b"\x00",
                b"a\x90b",
                b"x\xffb",
            ] {
                agree(p, s);
            }
        }
    }

    #[test]
    fn nesting_limit_counts_non_trailing_star_groups() {
        let a = |n: usize| "a".repeat(n);
        for (p, s) in [
            ("*a".repeat(1000) + "*", a(1000)),
            ("*a".repeat(1000) + "*", a(1005)),
            ("*a".repeat(1000) + "***", a(1001)),
            ("*a".repeat(1001) + "*", a(1001)),
            ("*a".repeat(1001) + "*", a(1100)),
            ("*a".repeat(999), a(1000)),
            ("*a".repeat(1000), a(1100)),
            ("*a".repeat(1001), a(1100)),
            // Consecutive stars are one group, so one nesting level.
            ("**a".repeat(1000), a(1000)),
            ("a*".repeat(1000) + "b", a(1000) + "b"),
            ("a*".repeat(1001) + "b", a(1001) + "b"),
            ("a*".repeat(1001), a(1001)),
        ] {
            agree(p.as_bytes(), s.as_bytes());
        }
        assert!(glob_match(
            ("*a".repeat(1000) + "*").as_bytes(),
            a(1005).as_bytes()
        ));
        assert!(!glob_match(
            ("*a".repeat(1001) + "*").as_bytes(),
            a(1100).as_bytes()
        ));
    }

    /// Patterns whose middle spans several words (and, past 16 words, the heap state),
    /// built from a string so that some match: each byte kept, turned into `?` or a class,
    /// or swallowed by a `*`.
    #[test]
    fn long_middles_agree_with_reference() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut outcomes = [0usize; 2];
        for k in [63usize, 64, 65, 127, 128, 129, 200, 1023, 1024, 1025, 1100] {
            for round in 0..6 {
                let s: Vec<u8> = (0..k + 40).map(|_| b"ab"[rand(2) as usize]).collect();
                let mut p = vec![b'*'];
                for &c in &s[5..5 + k] {
                    match rand(16) {
                        0 => p.push(b'?'),
                        1 => p.extend_from_slice(if c == b'a' { b"[a-a]" } else { b"[^a]" }),
                        2 => p.extend_from_slice(b"*"),
                        _ => p.push(c),
                    }
                }
                p.push(b'*');
                if round % 3 == 1 {
                    // Flip one token's byte so that most rounds miss.
                    let at = 1 + rand(p.len() as u64 - 2) as usize;
                    if p[at] == b'a' || p[at] == b'b' {
                        p[at] ^= 3;
                    }
                }
                if round % 3 == 2 {
                    p.extend_from_slice(b"ab");
                }
                let g = Glob::compile(&p);
                for s in [&s[..], &s[..k], &s[3..], b"ab"] {
                    let want = reference_glob_match(&p, s);
                    assert_eq!(g.matches(s), want, "k={k} round={round}");
                    outcomes[usize::from(want)] += 1;
                }
            }
        }
        // Both answers were exercised, not just misses.
        assert!(outcomes[0] > 20 && outcomes[1] > 20, "{outcomes:?}");
    }

    #[test]
    fn adversarial_inputs_are_linear() {
        // Each of these took the backtracking matcher O(n·m) steps: tens of seconds in a
        // debug build at these sizes. The compiled matcher takes milliseconds.
        const L: usize = 65536;
        let run = "a".repeat(L);
        let p = format!("*{}b", "a".repeat(L));
        assert!(!glob_match(p.as_bytes(), run.as_bytes()));
        assert!(glob_match(p.as_bytes(), format!("{run}b").as_bytes()));
        // The same shape with a trailing `*` needs the NFA (64 words of state) over 64 KiB.
        let p = format!("*{}b*", "a".repeat(4096));
        let g = Glob::compile(p.as_bytes());
        assert!(!g.matches(run.as_bytes()));
        assert!(g.matches(format!("{run}b{run}").as_bytes()));
        // And past the stack state (2048 tokens, 32 words).
        let p = format!("*{}b*", "a".repeat(2047));
        assert!(!glob_match(p.as_bytes(), run.as_bytes()));
        let p = format!("*{}?*", "a*".repeat(500));
        assert!(!glob_match(p.as_bytes(), &run.as_bytes()[..400]));
        assert!(glob_match(p.as_bytes(), run.as_bytes()));
    }

    #[test]
    fn anchored_shapes_and_reuse() {
        let g = Glob::compile(b"news.*");
        assert!(g.matches(b"news.tech"));
        assert!(g.matches(b"news."));
        assert!(!g.matches(b"news"));
        assert!(!g.matches(b"sport.tech"));
        let g = Glob::compile(b"*.t?ch");
        assert!(g.matches(b"news.tech") && g.matches(b".tach") && !g.matches(b"tech"));
        let g = Glob::compile(b"a[bc]*x*[de]f");
        for s in [
            &b"abxdf"[..],
            b"acQQxQQef",
            b"abxf",
            b"abdf",
            b"abxxdf",
            b"a",
        ] {
            agree(b"a[bc]*x*[de]f", s);
            assert_eq!(g.matches(s), reference_glob_match(b"a[bc]*x*[de]f", s));
        }
        // The same compiled value answers the same twice: no state survives a call.
        let g = Glob::compile(b"*ab*ab*");
        assert!(g.matches(b"xxabyyab"));
        assert!(!g.matches(b"xxabyy"));
        assert!(g.matches(b"xxabyyab"));
    }

    #[test]
    fn memory_is_small() {
        // Literal and anchored patterns hold only their bytes.
        assert_eq!(Glob::compile(b"news.tech").heap_bytes(), 9);
        assert_eq!(Glob::compile(b"news.*").heap_bytes(), 5);
        // A middle: 256 class ids plus a few words per class.
        let m16 = Glob::compile(b"*news.*.tech.eu*").heap_bytes();
        assert!(m16 < 512, "{m16}");
        let m256 = Glob::compile(format!("*{}b*", "a".repeat(253)).as_bytes()).heap_bytes();
        assert!(m256 < 512, "{m256}");
    }
}
