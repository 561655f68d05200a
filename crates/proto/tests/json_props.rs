//! Property tests: the JSON validator agrees with serde_json on generated documents, on
//! mutations of them, and on arbitrary bytes.

use corecast_proto::json::is_valid;
use proptest::prelude::*;
use serde_json::Value;

/// What serde_json says. `IgnoredAny` skips number conversion (so huge exponents are judged
/// by grammar alone, as the validator judges them) and also skips the UTF-8 check of the
/// strings it ignores, so the text's UTF-8 is checked here, as JSON text must be UTF-8.
fn serde_accepts(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::hash_map(".*", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn serialized_values_are_valid(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            serde_json::to_vec(&v).unwrap()
        };
        prop_assert!(is_valid(&text), "{}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn mutations_are_judged_as_serde_json_judges_them(
        v in json_value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut text = serde_json::to_vec(&v).unwrap();
        for (at, byte, op) in edits {
            if text.is_empty() {
                text.push(byte);
                continue;
            }
            let i = at.index(text.len());
            match op {
                0 => text[i] = byte,
                1 => { text.remove(i); }
                _ => text.insert(i, byte),
            }
        }
        prop_assert_eq!(is_valid(&text), serde_accepts(&text), "{:?}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn arbitrary_bytes_are_judged_as_serde_json_judges_them(
        b in prop::collection::vec(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'), Just(b','),
            Just(b'\\'), Just(b'u'), Just(b'1'), Just(b'-'), Just(b'e'), Just(b'.'), Just(b' '),
            Just(b'0'), Just(b'n'), any::<u8>(),
        ], 0..40),
    ) {
        prop_assert_eq!(is_valid(&b), serde_accepts(&b), "{:?}", String::from_utf8_lossy(&b));
    }
}
