//! The set of channel names one connection subscribes to. Most connections hold one or a few
//! names, so the set is a plain vector (one small allocation) and grows a hash index only past
//! `INDEX_AT` names; memory per idle subscriber is what this optimises.

use bytes::Bytes;

type Index = hashbrown::HashMap<Bytes, usize, ahash::RandomState>;

/// Names at which a hash index is built for O(1) lookups.
const INDEX_AT: usize = 16;

/// An unordered set of names (removal swaps the last name into the hole).
#[derive(Debug, Default)]
pub struct SubSet {
    names: Vec<Bytes>,
    index: Option<Box<Index>>,
}

impl SubSet {
    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(name).copied(),
            None => self.names.iter().position(|n| n.as_ref() == name),
        }
    }

    /// Whether `name` is in the set.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.position(name).is_some()
    }

    /// Adds `name`; false if it was already there.
    pub fn insert(&mut self, name: Bytes) -> bool {
        if self.contains(&name) {
            return false;
        }
        if self.names.capacity() == 0 {
            self.names.reserve_exact(1);
        }
        self.names.push(name.clone());
        match &mut self.index {
            Some(ix) => {
                ix.insert(name, self.names.len() - 1);
            }
            None if self.names.len() > INDEX_AT => {
                let ix: Index = self
                    .names
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, n)| (n, i))
                    .collect();
                self.index = Some(Box::new(ix));
            }
            None => {}
        }
        true
    }

    /// Removes `name`; false if it was not there.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let Some(at) = self.position(name) else {
            return false;
        };
        self.names.swap_remove(at);
        if let Some(ix) = &mut self.index {
            ix.remove(name);
            if let Some(moved) = self.names.get(at) {
                ix.insert(moved.clone(), at);
            }
        }
        if self.names.is_empty() {
            *self = Self::default();
        }
        true
    }

    /// The names, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.names.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_indexed_sets_agree() {
        let mut s = SubSet::default();
        for i in 0..100 {
            assert!(s.insert(Bytes::from(format!("ch{i}"))));
            assert!(!s.insert(Bytes::from(format!("ch{i}"))));
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
}
