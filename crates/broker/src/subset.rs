//! The set of channel names one connection subscribes to. Most connections hold one name, so
//! the set keeps one inline (no allocation beyond the name), a few in a small vector, and
//! builds a hash index only past `INDEX_AT` names: memory per idle subscriber is what this
//! optimises.

use crate::msg::Name;

type Index = hashbrown::HashMap<Name, usize, ahash::RandomState>;

/// Names at which a hash index is built for O(1) lookups.
const INDEX_AT: usize = 16;

/// An unordered set of names (removal swaps the last name into the hole).
#[derive(Debug, Default)]
pub enum SubSet {
    /// No names.
    #[default]
    Empty,
    /// One name, inline.
    One(Name),
    /// Two or more.
    Many(Box<Many>),
}

/// The names of a set holding two or more.
#[derive(Debug, Default)]
pub struct Many {
    names: Vec<Name>,
    index: Option<Index>,
}

impl Many {
    fn position(&self, name: &[u8]) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(name).copied(),
            None => self.names.iter().position(|n| n.as_ref() == name),
        }
    }
}

impl SubSet {
    /// An empty set, usable in statics.
    pub const EMPTY: SubSet = SubSet::Empty;

    /// Number of names.
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(_) => 1,
            Self::Many(m) => m.names.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &[u8]) -> bool {
        match self {
            Self::Empty => false,
            Self::One(n) => n.as_ref() == name,
            Self::Many(m) => m.position(name).is_some(),
        }
    }

    /// Adds `name`; false if it was already there.
    pub fn insert(&mut self, name: Name) -> bool {
        if self.contains(&name) {
            return false;
        }
        match self {
            Self::Empty => *self = Self::One(name),
            Self::One(first) => {
                let first = first.clone();
                *self = Self::Many(Box::new(Many {
                    names: vec![first, name],
                    index: None,
                }));
            }
            Self::Many(m) => {
                m.names.push(name.clone());
                match &mut m.index {
                    Some(ix) => {
                        ix.insert(name, m.names.len() - 1);
                    }
                    None if m.names.len() > INDEX_AT => {
                        let ix: Index = m
                            .names
                            .iter()
                            .cloned()
                            .enumerate()
                            .map(|(i, n)| (n, i))
                            .collect();
                        m.index = Some(ix);
                    }
                    None => {}
                }
            }
        }
        true
    }

    /// Removes `name`; false if it was not there.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        match self {
            Self::Empty => false,
            Self::One(n) if n.as_ref() == name => {
                *self = Self::Empty;
                true
            }
            Self::One(_) => false,
            Self::Many(m) => {
                let Some(at) = m.position(name) else {
                    return false;
                };
                m.names.swap_remove(at);
                if let Some(ix) = &mut m.index {
                    ix.remove(name);
                    if let Some(moved) = m.names.get(at) {
                        ix.insert(moved.clone(), at);
                    }
                }
                match m.names.len() {
                    0 => *self = Self::Empty,
                    1 => {
                        let Some(last) = m.names.pop() else {
                            unreachable!("one name left")
                        };
                        *self = Self::One(last);
                    }
                    _ => {}
                }
                true
            }
        }
    }

    /// The names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Name> {
        let slice: &[Name] = match self {
            Self::Empty => &[],
            Self::One(n) => std::slice::from_ref(n),
            Self::Many(m) => &m.names,
        };
        slice.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_indexed_sets_agree() {
        let mut s = SubSet::default();
        for i in 0..100 {
            assert!(s.insert(Name::from(format!("ch{i}").as_bytes())));
            assert!(!s.insert(Name::from(format!("ch{i}").as_bytes())));
        }
        assert_eq!(s.len(), 100);
        for i in (0..100).step_by(3) {
            assert!(s.remove(format!("ch{i}").as_bytes()));
            assert!(!s.remove(format!("ch{i}").as_bytes()));
        }
        for i in 0..100 {
            assert_eq!(s.contains(format!("ch{i}").as_bytes()), i % 3 != 0, "ch{i}");
        }
        let left: Vec<_> = s.iter().cloned().collect();
        for n in left {
            assert!(s.remove(&n));
        }
        assert!(s.is_empty());
    }

    #[test]
    fn one_name_is_kept_inline_and_the_set_shrinks_back() {
        let mut s = SubSet::default();
        assert!(s.insert(Name::from(&b"a"[..])));
        assert!(matches!(s, SubSet::One(_)));
        assert!(s.insert(Name::from(&b"b"[..])));
        assert!(matches!(s, SubSet::Many(_)));
        assert!(s.remove(b"a"));
        assert!(matches!(&s, SubSet::One(n) if n.as_ref() == b"b"));
        assert!(!s.remove(b"a"));
        assert!(s.remove(b"b"));
        assert!(s.is_empty());
        assert_eq!(std::mem::size_of::<SubSet>(), 24);
    }
}
